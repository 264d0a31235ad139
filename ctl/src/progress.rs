//! [`Progress`]: a one-line count-and-rate indicator on stderr for long transfers, shown only
//! when stderr is a terminal, so scripts and logs stay clean.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How often the line is redrawn: often enough to look alive, rarely enough to cost nothing.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Counts records moved and redraws `"{verb} N messages (R/s)"` on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    verb: &'static str,
    visible: bool,
    started: Instant,
    drawn: Option<Instant>,
    finished: bool,
}

impl Progress {
    /// An indicator that shows only when stderr is a terminal.
    pub(crate) fn on_terminal(verb: &'static str) -> Self {
        Self {
            verb,
            visible: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
            finished: false,
        }
    }

    /// Reports that `count` records are done so far.
    pub(crate) fn update(&mut self, count: u64) {
        if !self.visible {
            return;
        }
        let now = Instant::now();
        if self.drawn.is_some_and(|drawn| now - drawn < REDRAW_EVERY) {
            return;
        }
        self.drawn = Some(now);
        self.draw(count, "");
    }

    /// Draws the final count and ends the line.
    pub(crate) fn finish(&mut self, count: u64) {
        if self.visible {
            self.draw(count, "\n");
        }
        self.finished = true;
    }

    fn draw(&self, count: u64, end: &str) {
        let line = line(self.verb, count, self.started.elapsed());
        // The clear-to-end-of-line escape keeps a shorter line from showing the tail of a
        // longer one; a failed write to stderr is not worth failing a transfer for.
        let _ = write!(std::io::stderr(), "\r{line}\x1b[K{end}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A transfer that failed midway: end the line so the error starts on its own.
        if self.visible && self.drawn.is_some() && !self.finished {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `"exported 12 345 messages (6 172/s)"`.
fn line(verb: &str, count: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        // A display value: rounding and float precision do not matter.
        let rate = (count as f64 / seconds).round() as u64;
        grouped(rate)
    } else {
        "-".to_owned()
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{verb} {} message{plural} ({rate}/s)", grouped(count))
}

/// Digits in groups of three, for readability.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(' ');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_count_and_rate() {
        assert_eq!(
            line("exported", 12_345, Duration::from_secs(2)),
            "exported 12 345 messages (6 173/s)"
        );
        assert_eq!(
            line("imported", 1, Duration::ZERO),
            "imported 1 message (-/s)"
        );
        assert_eq!(grouped(1_000_000), "1 000 000");
        assert_eq!(grouped(999), "999");
    }
}
