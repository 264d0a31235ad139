//! Times as chatctl reads and writes them: RFC 3339 in UTC with millisecond precision
//! (`2026-11-25T12:00:00.123Z`) for exported messages, and RFC 3339 or a plain date for the
//! `--since` and `--until` arguments. The daemon counts milliseconds since the Unix epoch.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// Nanoseconds in a millisecond.
const NANOS_PER_MILLI: i128 = 1_000_000;

/// Milliseconds since the epoch as RFC 3339 in UTC with exactly three fraction digits.
///
/// # Errors
/// When the time lies outside the years 0000 to 9999, which RFC 3339 cannot write.
pub(crate) fn format_ms(ms: i64) -> Result<String, String> {
    let outside = || format!("time {ms} ms lies outside the years 0000-9999 of RFC 3339");
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * NANOS_PER_MILLI)
        .map_err(|_| outside())?;
    if time.year() < 0 {
        return Err(outside());
    }
    time.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .map_err(|_| outside())
}

/// An exported message's time: RFC 3339 (any offset) holding a whole number of
/// milliseconds, as milliseconds since the epoch.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub(crate) fn parse_exact_ms(text: &str) -> Result<i64, String> {
    let nanos = parse_rfc3339(text)?;
    if nanos % NANOS_PER_MILLI != 0 {
        return Err(format!(
            "`{text}` is more precise than a millisecond, which chatd cannot store"
        ));
    }
    to_ms(nanos / NANOS_PER_MILLI, text)
}

/// A `--since` or `--until` argument: RFC 3339 (any offset), or a date `YYYY-MM-DD` meaning
/// its midnight UTC, as milliseconds since the epoch. A time between two milliseconds is
/// rounded up, which keeps `--since` inclusive and `--until` exclusive of the exact instant.
///
/// # Errors
/// A message saying which forms are accepted.
pub(crate) fn parse_argument_ms(text: &str) -> Result<i64, String> {
    let nanos = match Date::parse(text, format_description!("[year]-[month]-[day]")) {
        Ok(date) => PrimitiveDateTime::new(date, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp_nanos(),
        Err(_) => parse_rfc3339(text).map_err(|_| {
            format!(
                "`{text}` is not a time: use RFC 3339 (2026-11-25T12:00:00Z, \
                 2026-11-25T13:00:00.5+01:00) or a date (2026-11-25, midnight UTC)"
            )
        })?,
    };
    to_ms(
        nanos.div_euclid(NANOS_PER_MILLI) + i128::from(nanos.rem_euclid(NANOS_PER_MILLI) != 0),
        text,
    )
}

fn parse_rfc3339(text: &str) -> Result<i128, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp_nanos)
        .map_err(|error| format!("`{text}` is not an RFC 3339 time ({error})"))
}

fn to_ms(ms: i128, text: &str) -> Result<i64, String> {
    i64::try_from(ms).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_with_milliseconds() {
        assert_eq!(format_ms(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_ms(1_795_608_000_123).unwrap(),
            "2026-11-25T12:00:00.123Z"
        );
        assert_eq!(format_ms(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_ms(-62_167_219_200_000).unwrap(),
            "0000-01-01T00:00:00.000Z"
        );
        assert!(format_ms(-62_167_219_200_001).is_err());
        assert!(format_ms(253_402_300_800_000).is_err());
        assert!(format_ms(i64::MAX).is_err());
    }

    #[test]
    fn written_times_read_back_exactly() {
        for ms in [0, 1, -1, 1_795_608_000_123, 253_402_300_799_999] {
            assert_eq!(parse_exact_ms(&format_ms(ms).unwrap()), Ok(ms));
        }
        assert_eq!(
            parse_exact_ms("2026-11-25T13:00:00.123+01:00"),
            Ok(1_795_608_000_123)
        );
        let error = parse_exact_ms("2026-11-25T12:00:00.1234Z").unwrap_err();
        assert!(error.contains("more precise than a millisecond"), "{error}");
        let error = parse_exact_ms("2026-11-25").unwrap_err();
        assert!(error.contains("not an RFC 3339 time"), "{error}");
    }

    #[test]
    fn arguments_take_rfc3339_or_a_date_at_midnight_utc() {
        assert_eq!(parse_argument_ms("2026-11-25"), Ok(1_795_564_800_000));
        assert_eq!(
            parse_argument_ms("2026-11-25T00:00:00Z"),
            Ok(1_795_564_800_000)
        );
        assert_eq!(
            parse_argument_ms("2026-11-25T01:00:00+01:00"),
            Ok(1_795_564_800_000)
        );
        // Between two milliseconds: the next one.
        assert_eq!(
            parse_argument_ms("2026-11-25T00:00:00.0001Z"),
            Ok(1_795_564_800_001)
        );
        assert_eq!(parse_argument_ms("1969-12-31T23:59:59.9995Z"), Ok(0));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-25 12:00",
            "1795564800000",
        ] {
            let error = parse_argument_ms(bad).unwrap_err();
            assert!(error.contains("use RFC 3339"), "{bad}: {error}");
        }
    }
}
