//! [`LatencyHistogram`]: latencies in microseconds in an HDR histogram (3 significant
//! digits, so p999 of a long run is exact to 0.1 %), and the [`LatencySummary`] a report
//! shows.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded as itself, in microseconds; anything slower is recorded as this
/// value. One minute: a send that takes longer has failed in any sense that matters here.
const MAX_RECORDED_MICROS: u64 = 60_000_000;

/// Significant decimal digits kept per value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies of one kind (ack or delivery).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants within hdrhistogram's rules (low >= 1, high >= 2 * low,
        // at most 5 digits); the test `the_bounds_are_valid` builds the same histogram.
        #[expect(clippy::unwrap_used, reason = "constant bounds that are valid")]
        let histogram =
            Histogram::new_with_bounds(1, MAX_RECORDED_MICROS, SIGNIFICANT_DIGITS).unwrap();
        Self { histogram }
    }

    /// Records one latency, rounded to whole microseconds (at least 1).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    /// Adds every value of `other`.
    ///
    /// # Errors
    /// When `other` holds values this one cannot (never for two histograms made by
    /// [`LatencyHistogram::new`]).
    pub fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .map_err(|error| anyhow::anyhow!("cannot merge latency histograms: {error:?}"))
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Percentiles and maximum.
    pub fn summary(&self) -> LatencySummary {
        let at = |quantile: f64| self.histogram.value_at_quantile(quantile);
        LatencySummary {
            count: self.histogram.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: self.histogram.max(),
            mean_us: self.histogram.mean(),
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// What a report shows of a latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Latencies recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_valid() {
        Histogram::<u64>::new_with_bounds(1, MAX_RECORDED_MICROS, SIGNIFICANT_DIGITS).unwrap();
    }

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let mut histogram = LatencyHistogram::new();
        for millis in 1..=1000 {
            histogram.record(Duration::from_millis(millis));
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 1000);
        // Three significant digits: within 0.1 % of the exact value.
        let near = |value: u64, exact: u64| value.abs_diff(exact) <= exact / 1000;
        assert!(near(summary.p50_us, 500_000), "{summary:?}");
        assert!(near(summary.p99_us, 990_000), "{summary:?}");
        assert!(near(summary.p999_us, 999_000), "{summary:?}");
        assert!(near(summary.max_us, 1_000_000), "{summary:?}");
    }

    #[test]
    fn merging_adds_counts_and_extremes_saturate() {
        let mut a = LatencyHistogram::new();
        a.record(Duration::from_micros(10));
        let mut b = LatencyHistogram::new();
        b.record(Duration::from_secs(3600));
        b.record(Duration::ZERO);
        a.merge(&b).unwrap();
        let summary = a.summary();
        assert_eq!(summary.count, 3);
        assert!(summary.max_us >= MAX_RECORDED_MICROS, "{summary:?}");
        assert!(!a.is_empty());
    }
}
