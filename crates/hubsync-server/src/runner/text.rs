//! The words of the sync log: what a run did, what failed and what to do.

use std::time::Duration;

use hubsync_core::{ErrorKind, SessionReport};

use crate::spec::DatabaseSpec;

/// What to do about a failure of this kind, when the error brought no hint.
pub(crate) fn fix_hint(kind: ErrorKind, what: &str) -> String {
    match kind {
        ErrorKind::Cancelled => "the next sync resumes where this one stopped".into(),
        ErrorKind::ConnectionFailed | ErrorKind::ConnectionLost => format!(
            "check the {what}'s databaseType, serverName, databaseName, userName and password, and that the database is reachable"
        ),
        ErrorKind::Schema | ErrorKind::TableMissing | ErrorKind::UnmappableType => {
            "fix the table or the group's sync schema, then sync again".into()
        }
        ErrorKind::NotProvisioned => "sync again: the next sync provisions the database again".into(),
        _ => "everything committed so far is kept and the next sync resumes from there".into(),
    }
}

/// A failure's full text: the error (with its own hint, if any) and, when
/// it had none, what to do. A password that found its way into a driver's
/// message is masked.
pub(crate) fn failure_text(
    doing: &str,
    error: &str,
    has_hint: bool,
    kind: ErrorKind,
    what: &str,
    db: &DatabaseSpec,
) -> String {
    let mut text = format!("{doing} failed: {error}");
    if !has_hint {
        text.push_str(". To fix: ");
        text.push_str(&fix_hint(kind, what));
    }
    mask_password(&text, db)
}

/// `text` with `db`'s password replaced by `***`.
pub(crate) fn mask_password(text: &str, db: &DatabaseSpec) -> String {
    match db.password.as_deref() {
        Some(pw) if !pw.is_empty() => text.replace(pw, "***"),
        _ => text.to_string(),
    }
}

/// The `Success` entry of one member.
pub(crate) fn success(db: &DatabaseSpec, report: &SessionReport) -> String {
    format!(
        "Synced {} with the hub: {} uploaded, {} downloaded, {} in {}.",
        db.display(),
        rows(report.uploaded),
        rows(report.downloaded),
        count(report.conflict_count, "conflict"),
        seconds(report.duration)
    )
}

/// The `Warning` entry of a cancelled member.
pub(crate) fn cancelled(db: &DatabaseSpec, uploaded: u64, downloaded: u64) -> String {
    format!(
        "The sync of {} was cancelled between batches after {} uploaded and {} downloaded; everything committed is kept and the next sync resumes from there.",
        db.display(),
        rows(uploaded),
        rows(downloaded)
    )
}

/// The `Warning` entry of a member whose sync met conflicts.
pub(crate) fn conflicts(
    report: &SessionReport,
    policy: &str,
    hub_won: usize,
    member_won: usize,
    logged: bool,
) -> String {
    let shown = report.conflicts.len() as u64;
    let mut text = format!(
        "{} resolved by {policy}: the hub's change won {hub_won}, the member's {member_won}",
        count(report.conflict_count, "conflict")
    );
    if report.conflict_count > shown {
        text.push_str(&format!(" (of the first {shown}; the rest were counted only)"));
    }
    text.push_str(if logged {
        ". Both row images are in the group's conflict log."
    } else {
        ". Turn on enableConflictLogging to keep both row images."
    });
    text
}

fn rows(n: u64) -> String {
    count(n, "row")
}

fn count(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DatabaseType;

    #[test]
    fn failures_say_what_to_do_and_never_show_the_password() {
        let db = DatabaseSpec {
            database_type: DatabaseType::PostgreSql,
            server_name: "db".into(),
            database_name: "sales".into(),
            user_name: "bob".into(),
            password: Some("s3cret".into()),
        };
        let text = failure_text(
            "opening the member",
            "password s3cret refused",
            false,
            ErrorKind::ConnectionFailed,
            "member",
            &db,
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("To fix: check the member's"), "{text}");
        let hinted = failure_text("x", "bad. Do y", true, ErrorKind::Other, "member", &db);
        assert!(!hinted.contains("To fix"), "{hinted}");
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(rows(1), "1 row");
        assert_eq!(rows(0), "0 rows");
        assert_eq!(count(3, "conflict"), "3 conflicts");
    }
}
