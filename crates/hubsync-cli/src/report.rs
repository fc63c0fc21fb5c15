//! Plain-text tables and summaries printed at the end of commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::commands::sync::GroupOutcome;

/// Conflicts listed in full before "and N more".
const MAX_CONFLICT_LINES: usize = 20;

/// A left-aligned text table; numbers are right-aligned.
#[derive(Debug, Default)]
pub struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl TextTable {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        TextTable { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with each line prefixed by `indent`.
    pub fn render(&self, indent: &str) -> String {
        let cols = self.header.len();
        let width = |i: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let number =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == '/');
        // A column of numbers (or "-") is right-aligned, its title too.
        let right: Vec<bool> = (0..cols)
            .map(|i| !self.rows.is_empty() && self.rows.iter().all(|r| r.get(i).is_some_and(|c| number(c) || c == "-")))
            .collect();
        let line = |cells: &Vec<String>| {
            let mut out = String::from(indent);
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                if right[i] {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < cols {
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }
}

/// A duration for people: `84 ms`, `2.3 s`, `4 min 10 s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A timestamp (µs since the epoch) for people: `2026-11-23 10:01:02 UTC (3 min ago)`.
pub fn human_time(micros: i64, now: SystemTime) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(micros.max(0).unsigned_abs());
    let stamp = humantime::format_rfc3339_seconds(at).to_string().replace('T', " ").replace('Z', " UTC");
    let ago = match now.duration_since(at) {
        Ok(d) => {
            let s = d.as_secs();
            if s < 60 {
                "just now".to_string()
            } else if s < 3_600 {
                format!("{} min ago", s / 60)
            } else if s < 86_400 {
                format!("{} h ago", s / 3_600)
            } else {
                format!("{} days ago", s / 86_400)
            }
        }
        Err(_) => "in the future: check the clocks".to_string(),
    };
    format!("{stamp} ({ago})")
}

/// `1 row`, `2 rows`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
}

/// Prints the per-member table of a sync, the conflicts, and the total.
pub fn print_sync_summary(outcomes: &[GroupOutcome]) {
    let mut moved = 0;
    let mut any_failed = false;
    let mut conflicts = Vec::new();
    let mut hidden_conflicts = 0;
    for o in outcomes {
        say!("Group `{}` (hub {}, {} policy):", o.group.name, super::commands::show_url(&o.group.hub), o.group.policy);
        if !o.failures.is_empty() {
            any_failed = true;
            say!("  FAILED before any member synced (see the errors below)");
            continue;
        }
        if o.members.is_empty() {
            say!("  no members to sync");
            continue;
        }
        let mut table = TextTable::new(&["MEMBER", "DIRECTION", "UP", "DOWN", "CONFLICTS", "DURATION", "STATUS"]);
        for m in &o.members {
            let created = if m.created.is_empty() {
                String::new()
            } else {
                format!(" (created {})", m.created.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))
            };
            match &m.result {
                Ok(r) => {
                    moved += r.rows_moved();
                    for c in &r.conflicts {
                        conflicts.push(format!("{}: {}", m.member.name, c.describe()));
                    }
                    hidden_conflicts += r.conflict_count.saturating_sub(r.conflicts.len() as u64);
                    table.row(vec![
                        m.member.name.clone(),
                        m.member.direction.to_string(),
                        r.uploaded.to_string(),
                        r.downloaded.to_string(),
                        r.conflict_count.to_string(),
                        human_duration(r.duration),
                        format!("ok{created}"),
                    ]);
                }
                Err(_) => {
                    any_failed = true;
                    table.row(vec![
                        m.member.name.clone(),
                        m.member.direction.to_string(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        format!("FAILED{created}"),
                    ]);
                }
            }
        }
        say!("{}", table.render("  "));
    }
    if !conflicts.is_empty() || hidden_conflicts > 0 {
        say!("\nConflicts (the loser's change was discarded, the winner's kept):");
        for c in conflicts.iter().take(MAX_CONFLICT_LINES) {
            say!("  {c}");
        }
        let more = conflicts.len().saturating_sub(MAX_CONFLICT_LINES) as u64 + hidden_conflicts;
        if more > 0 {
            say!("  … and {more} more");
        }
    }
    say!();
    match (moved, any_failed) {
        (0, false) => say!("Already in sync: 0 rows moved."),
        (n, false) => say!("Sync complete: {} moved.", plural(n, "row")),
        (n, true) => say!("Sync finished with errors: {} moved; the failures are listed below.", plural(n, "row")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_numbers_go_right() {
        let mut t = TextTable::new(&["NAME", "ROWS"]);
        t.row(vec!["a".into(), "5".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        assert_eq!(t.render(""), "NAME     ROWS\na           5\nlonger  12345");
    }

    #[test]
    fn times_read_well() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let three_min_ago = (1_795_000_000 - 180) * 1_000_000;
        assert_eq!(human_time(three_min_ago, now), "2026-11-18 11:03:40 UTC (3 min ago)");
        assert_eq!(human_duration(Duration::from_millis(84)), "84 ms");
        assert_eq!(human_duration(Duration::from_millis(2_340)), "2.3 s");
    }
}
