//! Progress display for sync sessions: a bar per member on a terminal, log
//! lines otherwise, or nothing (for commands that tell their own story).

use std::io::IsTerminal;
use std::time::Duration;

use hubsync_core::{LogObserver, SessionEvent, SessionObserver};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone)]
pub enum Progress {
    /// One bar per member (stderr is a terminal).
    Bars(MultiProgress),
    /// `tracing` lines (stderr is a file or pipe).
    Log,
    /// Nothing.
    Quiet,
}

impl Progress {
    /// Bars on a terminal, log lines otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() { Progress::Bars(MultiProgress::new()) } else { Progress::Log }
    }

    /// Bars on a terminal, nothing otherwise.
    pub fn bars_or_quiet() -> Self {
        if std::io::stderr().is_terminal() { Progress::Bars(MultiProgress::new()) } else { Progress::Quiet }
    }

    /// An observer for one member's session.
    pub fn member(&self, group: &str, member: &str) -> MemberProgress {
        let bar = match self {
            Progress::Bars(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(format!("{group}/{member}"));
                bar.set_message("connecting");
                // A steady tick keeps the spinner alive while a batch is applied.
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Progress::Log | Progress::Quiet => None,
        };
        MemberProgress { bar, log: matches!(self, Progress::Log) }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner} {wide_msg} {pos} rows")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {wide_msg} [{bar:30}] {pos}/{len} rows")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Observes one member's session.
pub struct MemberProgress {
    bar: Option<ProgressBar>,
    log: bool,
}

impl MemberProgress {
    /// Sets what the member is doing outside a session (connecting, provisioning).
    pub fn stage(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    /// Removes the bar: the summary table that follows says how it went.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl SessionObserver for MemberProgress {
    fn on_event(&self, event: SessionEvent<'_>) {
        if self.log {
            LogObserver.on_event(event);
        }
        let Some(bar) = &self.bar else { return };
        match event {
            SessionEvent::LegStarted { leg } => bar.set_message(format!("{leg}")),
            SessionEvent::TableStarted { leg, table, pending, bulk } => {
                let what = if bulk { "initial copy of" } else { "" };
                bar.set_message(format!("{leg} {what} {table}").replace("  ", " "));
                bar.set_position(0);
                match pending {
                    Some(n) => {
                        bar.set_style(bar_style());
                        bar.set_length(n);
                    }
                    None => {
                        bar.set_style(spinner_style());
                        bar.unset_length();
                    }
                }
            }
            SessionEvent::RowsMoved { rows, .. } => bar.inc(rows),
            SessionEvent::Conflict(_) | SessionEvent::TableFinished { .. } => {}
        }
    }
}
