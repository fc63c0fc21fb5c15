//! A spinner or progress bar on standard error while a phase runs.

use std::time::Duration;

use hubsync_core::{SessionEvent, SessionObserver};
use indicatif::{ProgressBar, ProgressStyle};

/// A spinner or progress bar on standard error; hidden when it is not a
/// terminal. As a [`SessionObserver`] it counts the rows each batch commits,
/// instead of logging every batch.
pub(crate) struct Progress(ProgressBar);

impl Progress {
    /// A spinner with a message, for phases whose progress is unknown.
    pub(crate) fn spinner(message: String) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    /// A bar counting rows up to `total`.
    pub(crate) fn rows(message: String, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {human_pos}/{human_len} rows ({per_sec})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl SessionObserver for Progress {
    fn on_event(&self, event: SessionEvent<'_>) {
        if let SessionEvent::RowsMoved { rows, .. } = event {
            self.0.inc(rows);
        }
    }
}
