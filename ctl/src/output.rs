//! What chatctl prints on success: a human line or table, or with `--json` the daemon's reply
//! as one JSON line (the `protocol::admin::AdminReply` wire form, stable for scripts; `db`
//! commands, which do not talk to the daemon, print an object of their own).

use serde::Serialize;

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `reply` as JSON, or the text `human` makes.
    pub(crate) fn print(self, reply: &impl Serialize, human: impl FnOnce() -> String) {
        if self.json {
            // What is printed holds only strings, numbers, booleans and lists or maps of
            // them, which serde_json always serializes.
            println!("{}", serde_json::to_string(reply).unwrap_or_default());
        } else {
            let text = human();
            println!("{}", text.trim_end());
        }
    }
}

/// Left-aligned columns separated by two spaces, headers first.
pub(crate) fn table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row = headers.map(str::to_owned);
    for row in std::iter::once(&header_row).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        day_secs / 3600,
        day_secs % 3600 / 60
    )
}

/// A span of seconds as `1d 2h 3m 4s`, leaving out leading zero units.
pub(crate) fn duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
    ];
    let mut text: String = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .map(|(n, unit)| format!("{n}{unit} "))
        .collect();
    text.push_str(&format!("{}s", secs % 60));
    text
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is in 1..=31 and month in 1..=12 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            ["NAME", "SESSIONS"],
            &[
                ["alice".to_owned(), "2".to_owned()],
                ["bo".to_owned(), "10".to_owned()],
            ],
        );
        assert_eq!(text, "NAME   SESSIONS\nalice  2\nbo     10\n");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(3_725), "1h 2m 5s");
        assert_eq!(duration(90_061), "1d 1h 1m 1s");
        assert_eq!(duration(86_400), "1d 0h 0m 0s");
    }
}
