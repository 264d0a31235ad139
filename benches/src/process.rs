//! CPU time and memory of a process, read from Linux's `/proc/<pid>/stat` and
//! `/proc/<pid>/status`, and the reset of its peak RSS through `/proc/<pid>/clear_refs`, so a
//! run's peak covers the measured phase and not the set-up (each OPAQUE registration and
//! login stretches the password with 64 MiB of Argon2id).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second in `/proc/<pid>/stat`. Linux fixes `USER_HZ` at 100 for user
/// space on every architecture it exports `/proc` to, whatever the kernel's `HZ`
/// (`getconf CLK_TCK` prints 100).
const USER_HZ: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
    /// Resident set size now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size since start or the last reset, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// A process to watch.
#[derive(Debug, Clone)]
pub struct ProcessProbe {
    dir: PathBuf,
}

impl ProcessProbe {
    /// Watches the process `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// Reads the process's CPU time and memory now.
    ///
    /// # Errors
    /// When `/proc` is missing (not Linux), the process is gone, or a file has an unknown
    /// layout.
    pub fn sample(&self) -> anyhow::Result<ProcessSample> {
        let stat = self.read("stat")?;
        let status = self.read("status")?;
        let cpu = parse_cpu(&stat).context("cannot parse the CPU times in /proc/<pid>/stat")?;
        let field = |name: &str| {
            parse_status_kib(&status, name)
                .with_context(|| format!("no {name} in /proc/<pid>/status"))
        };
        Ok(ProcessSample {
            cpu,
            rss_kib: field("VmRSS")?,
            peak_rss_kib: field("VmHWM")?,
        })
    }

    /// Resets the peak RSS to the current RSS. Whether it worked: it needs Linux 4.0 or
    /// later and the right to write the process's `clear_refs` (always given for this
    /// process, for another one only to its owner or root).
    pub fn reset_peak_rss(&self) -> bool {
        // "5" resets the peak RSS and nothing else (proc(5), /proc/pid/clear_refs).
        std::fs::write(self.dir.join("clear_refs"), "5").is_ok()
    }

    fn read(&self, file: &str) -> anyhow::Result<String> {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// `utime + stime` from the contents of `/proc/<pid>/stat`. The command name (field 2) is
/// in parentheses and may hold spaces and parentheses itself, so fields are counted from
/// the last `)`.
fn parse_cpu(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_ascii_whitespace();
    // After the name: state (field 3) ... utime (field 14), stime (field 15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(ticks.checked_mul(1000 / USER_HZ)?))
}

/// A `Name:   1234 kB` line from `/proc/<pid>/status`, in KiB.
fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_counted_after_the_command_name() {
        let stat = "4242 (tokio (x) 1) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 75 0 0 20 0 \
                    6 0 1000 123456789 2000 18446744073709551615";
        assert_eq!(parse_cpu(stat), Some(Duration::from_millis(3250)));
        assert_eq!(parse_cpu("4242 (short) S 1"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tchatd\nVmHWM:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(204_800));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled_and_its_peak_reset() {
        let probe = ProcessProbe::new(std::process::id());
        let before = probe.sample().unwrap();
        assert!(before.rss_kib > 0);
        assert!(before.peak_rss_kib >= before.rss_kib);
        assert!(probe.reset_peak_rss());
        let after = probe.sample().unwrap();
        assert!(after.cpu >= before.cpu);
    }
}
