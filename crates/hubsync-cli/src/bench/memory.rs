//! Peak memory and CPU time of the whole process, from Linux's `/proc/self`.
//!
//! The kernel keeps the peak resident set size (`VmHWM`, the "high water
//! mark") of every process. Writing `5` to `/proc/self/clear_refs` resets it to
//! the current RSS (Linux 4.0 and later), so a phase's peak is: reset, run the
//! phase, read `VmHWM`. It counts every thread: the tokio workers, SQLite's
//! page caches and the sync's batches in flight.

use std::fs;
use std::io;
use std::time::Duration;

const STATUS: &str = "/proc/self/status";
const STAT: &str = "/proc/self/stat";
const CLEAR_REFS: &str = "/proc/self/clear_refs";

/// Measures the peak RSS of one phase.
#[derive(Debug)]
pub(crate) struct PeakProbe {
    /// Whether the kernel's counter was reset before the phase; when not, the
    /// peak read afterwards is the peak since the process started.
    reset: bool,
}

impl PeakProbe {
    /// Resets the kernel's peak counter to the current RSS.
    pub(crate) fn start() -> Self {
        let reset = match fs::write(CLEAR_REFS, "5") {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "Could not reset the peak RSS counter; peaks count from the process start.");
                false
            }
        };
        PeakProbe { reset }
    }

    /// The peak RSS since [`PeakProbe::start`], or `None` when it cannot be read.
    pub(crate) fn finish(self) -> Peak {
        match read_status_kib("VmHWM") {
            Ok(Some(kib)) => Peak { bytes: Some(kib * 1024), reset: self.reset },
            Ok(None) => Peak { bytes: None, reset: self.reset },
            Err(e) => {
                tracing::debug!(error = %e, "Could not read the peak RSS.");
                Peak { bytes: None, reset: self.reset }
            }
        }
    }
}

/// The peak RSS of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peak {
    /// Bytes, when the platform reports it.
    pub(crate) bytes: Option<u64>,
    /// Whether the counter was reset before the phase (else: since process start).
    pub(crate) reset: bool,
}

/// Reads one `kB` field (`VmHWM`, `VmRSS`) of `/proc/self/status`, in KiB.
pub(crate) fn read_status_kib(field: &str) -> io::Result<Option<u64>> {
    let status = fs::read_to_string(STATUS)?;
    Ok(parse_status_kib(&status, field))
}

/// Finds `field` in the text of `/proc/<pid>/status` and returns its value in
/// KiB: the line looks like `VmHWM:\t   52344 kB`.
pub(crate) fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some(unit) if unit.eq_ignore_ascii_case("kB") => Some(value),
            _ => None,
        }
    })
}

/// CPU time (user plus system) the process has used so far, all its threads
/// included (also those that have exited), or `None` off Linux.
pub(crate) fn cpu_time() -> Option<Duration> {
    let stat = fs::read_to_string(STAT).ok()?;
    parse_stat_cpu(&stat)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`. They are fields 14 and
/// 15, counted in clock ticks of 1/100 s (`USER_HZ`, 100 on every Linux
/// architecture's user ABI). The command name (field 2) is in parentheses and
/// may hold spaces, so fields are counted after its closing parenthesis.
pub(crate) fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    const TICKS_PER_SEC: u64 = 100;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Name:\thubsync\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\nPid:\t4242\n\
        VmPeak:\t  912344 kB\nVmSize:\t  845120 kB\nVmLck:\t       0 kB\nVmHWM:\t   52344 kB\n\
        VmRSS:\t   48120 kB\nRssAnon:\t   30000 kB\nThreads:\t7\n";

    #[test]
    fn peak_rss_is_read_from_vmhwm_in_kib() {
        assert_eq!(parse_status_kib(SAMPLE, "VmHWM"), Some(52_344));
        assert_eq!(parse_status_kib(SAMPLE, "VmRSS"), Some(48_120));
    }

    #[test]
    fn missing_or_malformed_fields_give_none() {
        assert_eq!(parse_status_kib(SAMPLE, "VmSwap"), None);
        assert_eq!(parse_status_kib("VmHWM:\tlots kB\n", "VmHWM"), None);
        assert_eq!(parse_status_kib("VmHWM:\t12\n", "VmHWM"), None);
        assert_eq!(parse_status_kib("", "VmHWM"), None);
        // A field whose name merely starts with the one asked for is not it.
        assert_eq!(parse_status_kib("VmHWMx:\t1 kB\n", "VmHWM"), None);
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        let stat = "4242 (hub sync) S 1 4242 4242 0 -1 4194304 3000 0 0 0 250 125 0 0 20 0 7 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(3_750)));
        assert_eq!(parse_stat_cpu("4242 (x) S 1"), None);
        assert_eq!(parse_stat_cpu("no parenthesis"), None);
    }

    #[test]
    fn the_running_process_reports_a_peak_on_linux() {
        if cfg!(target_os = "linux") {
            let peak = PeakProbe::start().finish();
            assert!(peak.bytes.is_some_and(|b| b > 0), "{peak:?}");
        }
    }
}
