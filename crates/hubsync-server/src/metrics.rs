//! Prometheus metrics: syncs started, succeeded and failed per group and
//! member; rows moved; conflicts by policy; sync durations; per member the
//! changes waiting and the seconds since its last successful sync.
//!
//! Every label value is a group name, a member name, a policy or a direction:
//! names are bounded by what the store holds, so cardinality stays bounded.
//! Recording before [`install`] is harmless (the `metrics` facade drops it).

use std::sync::OnceLock;
use std::time::Duration;

use hubsync_core::ConflictPolicy;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Syncs started, per group and member.
pub const SYNCS_STARTED: &str = "hubsync_syncs_started_total";
/// Syncs that succeeded, per group and member.
pub const SYNCS_SUCCEEDED: &str = "hubsync_syncs_succeeded_total";
/// Syncs that failed, per group and member.
pub const SYNCS_FAILED: &str = "hubsync_syncs_failed_total";
/// Rows written on the hub, per group and member.
pub const ROWS_UPLOADED: &str = "hubsync_rows_uploaded_total";
/// Rows written on members, per group and member.
pub const ROWS_DOWNLOADED: &str = "hubsync_rows_downloaded_total";
/// Conflicts resolved, per group and policy.
pub const CONFLICTS: &str = "hubsync_conflicts_total";
/// How long member syncs take, per group and member.
pub const SYNC_DURATION: &str = "hubsync_sync_duration_seconds";
/// Changes waiting to move, per group, member and direction.
pub const PENDING_CHANGES: &str = "hubsync_member_pending_changes";
/// Seconds since a member last synced successfully.
pub const SECONDS_SINCE_SUCCESS: &str = "hubsync_member_seconds_since_last_success";

/// Duration buckets: a continuous-mode poll takes milliseconds, an initial
/// copy of a large table minutes.
const DURATION_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle) and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(build).clone()
}

fn build() -> PrometheusHandle {
    let builder = PrometheusBuilder::new();
    // The buckets are constant and non-empty, which is the builder's only
    // failure; keep the builder as it was should that ever change.
    let builder = match builder.set_buckets_for_metric(Matcher::Full(SYNC_DURATION.into()), &DURATION_BUCKETS) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "Sync duration buckets refused; durations are exported as a summary.");
            PrometheusBuilder::new()
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            describe();
            handle
        }
        Err(e) => {
            // Another recorder owns the process (an embedding application):
            // render an empty registry rather than fail the server.
            tracing::warn!(error = %e, "A metrics recorder is already installed; /metrics will be empty.");
            PrometheusBuilder::new().build_recorder().handle()
        }
    }
}

fn describe() {
    describe_counter!(SYNCS_STARTED, "Member syncs started.");
    describe_counter!(SYNCS_SUCCEEDED, "Member syncs that succeeded.");
    describe_counter!(SYNCS_FAILED, "Member syncs that failed.");
    describe_counter!(ROWS_UPLOADED, "Rows written on the hub.");
    describe_counter!(ROWS_DOWNLOADED, "Rows written on members.");
    describe_counter!(CONFLICTS, "Conflicts resolved, by the policy that decided.");
    describe_histogram!(SYNC_DURATION, metrics::Unit::Seconds, "How long member syncs take.");
    describe_gauge!(PENDING_CHANGES, "Changes waiting to move between a member and its hub.");
    describe_gauge!(
        SECONDS_SINCE_SUCCESS,
        metrics::Unit::Seconds,
        "Seconds since the member last synced successfully."
    );
}

/// Drains histogram buckets into the registry so memory stays bounded when
/// nobody scrapes; the scheduler calls it every few seconds.
pub fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

fn labels(group: &str, member: &str) -> [(&'static str, String); 2] {
    [("group", group.to_string()), ("member", member.to_string())]
}

/// A member sync started.
pub fn sync_started(group: &str, member: &str) {
    counter!(SYNCS_STARTED, &labels(group, member)).increment(1);
}

/// A member sync ended. `succeeded` is `None` for a cancelled sync (neither
/// success nor failure); rows count what was committed either way.
pub fn sync_ended(group: &str, member: &str, succeeded: Option<bool>, took: Duration, uploaded: u64, downloaded: u64) {
    let labels = labels(group, member);
    match succeeded {
        Some(true) => counter!(SYNCS_SUCCEEDED, &labels).increment(1),
        Some(false) => counter!(SYNCS_FAILED, &labels).increment(1),
        None => {}
    }
    if uploaded > 0 {
        counter!(ROWS_UPLOADED, &labels).increment(uploaded);
    }
    if downloaded > 0 {
        counter!(ROWS_DOWNLOADED, &labels).increment(downloaded);
    }
    histogram!(SYNC_DURATION, &labels).record(took.as_secs_f64());
}

/// Conflicts resolved by a policy.
pub fn conflicts(group: &str, policy: ConflictPolicy, count: u64) {
    if count > 0 {
        counter!(CONFLICTS, "group" => group.to_string(), "policy" => policy.to_string()).increment(count);
    }
}

/// Changes waiting between a member and its hub.
pub fn pending_changes(group: &str, member: &str, upload: u64, download: u64) {
    for (direction, value) in [("upload", upload), ("download", download)] {
        gauge!(PENDING_CHANGES, "group" => group.to_string(), "member" => member.to_string(), "direction" => direction)
            .set(value as f64);
    }
}

/// Seconds since a member's last successful sync.
pub fn seconds_since_last_success(group: &str, member: &str, seconds: f64) {
    gauge!(SECONDS_SINCE_SUCCESS, &labels(group, member)).set(seconds.max(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered_with_their_labels() {
        let handle = install();
        sync_started("g-metrics", "m1");
        sync_ended("g-metrics", "m1", Some(true), Duration::from_millis(30), 5, 7);
        conflicts("g-metrics", ConflictPolicy::HubWin, 2);
        pending_changes("g-metrics", "m1", 3, 0);
        seconds_since_last_success("g-metrics", "m1", 1.5);
        let text = handle.render();
        for line in [
            r#"hubsync_syncs_started_total{group="g-metrics",member="m1"} 1"#,
            r#"hubsync_syncs_succeeded_total{group="g-metrics",member="m1"} 1"#,
            r#"hubsync_rows_uploaded_total{group="g-metrics",member="m1"} 5"#,
            r#"hubsync_rows_downloaded_total{group="g-metrics",member="m1"} 7"#,
            r#"hubsync_conflicts_total{group="g-metrics",policy="HubWin"} 2"#,
            r#"hubsync_member_pending_changes{group="g-metrics",member="m1",direction="upload"} 3"#,
            r#"hubsync_member_seconds_since_last_success{group="g-metrics",member="m1"} 1.5"#,
            r#"hubsync_sync_duration_seconds_bucket{group="g-metrics",member="m1",le="0.05"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // The same recorder is returned, not a second one.
        assert!(install().render().contains("g-metrics"));
    }
}
