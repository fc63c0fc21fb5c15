//! The benchmark's printed output: the machine, and the table of figures.

use std::fmt::Write as _;
use std::time::Duration;

use super::memory::Peak;

/// Whether a figure met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Met.
    Pass,
    /// Missed.
    Miss,
    /// Not measured: the figure or its baseline could not be taken on this
    /// system (the run says why).
    NotMeasured,
}

impl Outcome {
    pub(crate) fn from_met(met: bool) -> Self {
        if met { Outcome::Pass } else { Outcome::Miss }
    }
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// What was measured.
    pub(crate) phase: String,
    /// Rows moved.
    pub(crate) rows: u64,
    /// Wall time of the timed part.
    pub(crate) elapsed: Duration,
    /// CPU time (all threads, user and system) of the timed part.
    pub(crate) cpu: Option<Duration>,
    /// Rows per second relative to the baseline of the same size.
    pub(crate) vs_baseline: Option<f64>,
    /// Peak RSS of the whole process during the phase.
    pub(crate) peak: Option<Peak>,
    /// The target, in words.
    pub(crate) target: Option<String>,
    /// The verdicts on the target's parts, with what missed (`speed`, `memory`).
    pub(crate) checks: Vec<(&'static str, Outcome)>,
}

impl Line {
    /// A line without a target.
    pub(crate) fn info(phase: impl Into<String>, rows: u64, elapsed: Duration) -> Self {
        Line {
            phase: phase.into(),
            rows,
            elapsed,
            cpu: None,
            vs_baseline: None,
            peak: None,
            target: None,
            checks: Vec::new(),
        }
    }

    /// Rows per second.
    pub(crate) fn rate(&self) -> f64 {
        rate(self.rows, self.elapsed)
    }

    fn result(&self) -> String {
        if self.checks.is_empty() {
            return "—".into();
        }
        let missed: Vec<&str> =
            self.checks.iter().filter(|(_, o)| *o == Outcome::Miss).map(|(what, _)| *what).collect();
        let unmeasured: Vec<&str> =
            self.checks.iter().filter(|(_, o)| *o == Outcome::NotMeasured).map(|(what, _)| *what).collect();
        if !missed.is_empty() {
            format!("MISS ({})", missed.join(", "))
        } else if !unmeasured.is_empty() {
            format!("NOT MEASURED ({})", unmeasured.join(", "))
        } else {
            "PASS".into()
        }
    }
}

/// Rows per second (0 for an instant phase of no rows).
pub(crate) fn rate(rows: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { rows as f64 / secs } else { 0.0 }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Peak RSS in MB (10^6 bytes), marked when the counter could not be reset.
pub(crate) fn format_peak(peak: &Peak) -> String {
    match peak.bytes {
        Some(b) => {
            let mb = b as f64 / 1e6;
            if peak.reset { format!("{mb:.1} MB") } else { format!("{mb:.1} MB (since start)") }
        }
        None => "n/a".into(),
    }
}

/// Renders the lines as a Markdown table, columns aligned for the terminal.
pub(crate) fn render_table(lines: &[Line]) -> String {
    let header = ["Phase", "Rows", "Seconds", "CPU s", "Rows/s", "vs baseline", "Peak RSS", "Target", "Result"];
    let right = [false, true, true, true, true, true, true, false, false];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for line in lines {
        cells.push(vec![
            line.phase.clone(),
            thousands(line.rows),
            format!("{:.2}", line.elapsed.as_secs_f64()),
            line.cpu.map_or_else(|| "—".into(), |c| format!("{:.2}", c.as_secs_f64())),
            thousands(line.rate().round() as u64),
            line.vs_baseline.map_or_else(|| "—".into(), |r| format!("{:.0} %", r * 100.0)),
            line.peak.as_ref().map_or_else(|| "—".into(), format_peak),
            line.target.clone().unwrap_or_else(|| "—".into()),
            line.result(),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| cells.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (r, row) in cells.iter().enumerate() {
        out.push('|');
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if right[c] && r > 0 {
                let _ = write!(out, " {}{} |", " ".repeat(pad), cell);
            } else {
                let _ = write!(out, " {}{} |", cell, " ".repeat(pad));
            }
        }
        out.push('\n');
        if r == 0 {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if right[c] {
                    let _ = write!(out, " {dashes}:|");
                } else {
                    let _ = write!(out, " {dashes} |");
                }
            }
            out.push('\n');
        }
    }
    out
}

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// CPUs this process may run on (as `nproc` counts them).
    pub(crate) cpus: usize,
    /// The CPU model from `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
    /// Total memory in bytes, from `/proc/meminfo`.
    pub(crate) memory_bytes: Option<u64>,
    /// The kernel release.
    pub(crate) kernel: String,
}

impl Machine {
    /// Reads what Linux reports; unknown fields say so.
    pub(crate) fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.trim() == "model name").map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = super::memory::parse_status_kib(&meminfo, "MemTotal").map(|kib| kib * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_string());
        Machine { cpus, cpu_model, memory_bytes, kernel }
    }

    /// One line: `2 CPUs (Intel …), 23.4 GiB RAM, Linux 6.1`.
    pub(crate) fn describe(&self) -> String {
        let memory = self
            .memory_bytes
            .map_or_else(|| "unknown RAM".into(), |b| format!("{:.1} GiB RAM", b as f64 / (1024.0 * 1024.0 * 1024.0)));
        format!("{} CPUs (nproc), {}, {memory}, {}", self.cpus, self.cpu_model, self.kernel)
    }
}

/// Today's date in UTC, `YYYY-MM-DD`, from the system clock.
pub(crate) fn today_utc() -> String {
    let days = hubsync_core::now_micros().div_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn days_convert_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn the_table_shows_verdicts_and_aligns_columns() {
        let mut line = Line::info("initial sync", 1_000, Duration::from_millis(500));
        line.vs_baseline = Some(0.5);
        line.target = Some("≥ 50 % of baseline".into());
        line.checks = vec![("speed", Outcome::Pass), ("memory", Outcome::Miss)];
        let table = render_table(&[line, Line::info("baseline", 1_000, Duration::from_millis(250))]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert!(rows[1].starts_with("| ---") && rows[1].contains(":|"), "{table}");
        assert!(rows[2].contains("2,000") && rows[2].contains("50 %") && rows[2].contains("MISS (memory)"), "{table}");
        let widths: Vec<usize> = rows.iter().map(|r| r.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
    }
}
