//! A group's sync history as an SVG chart, drawn on the server: rows moved
//! and duration per run, with failed and cancelled runs marked by a shape
//! (and named in each bar's tooltip), not by colour alone.

use std::fmt::Write as _;

use crate::store::RunRecord;

/// Runs shown in the chart.
pub const MAX_RUNS: usize = 30;

/// One sync run of a group: its members' records added up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPoint {
    /// The run's tracing id.
    pub tracing_id: String,
    /// When its first member started (µs since the epoch).
    pub started_at: i64,
    /// Rows written on the hub and on members.
    pub rows: i64,
    /// The longest member session, in ms.
    pub duration_ms: i64,
    /// `Failed` if any member failed, else `Cancelled` if any was, else `Succeeded`.
    pub outcome: String,
}

/// Folds per-member records (newest first, as the store returns them) into
/// runs, oldest first, the last [`MAX_RUNS`] of them.
pub fn runs(records: &[RunRecord]) -> Vec<RunPoint> {
    let mut points: Vec<RunPoint> = Vec::new();
    for record in records {
        let rows = record.uploaded.saturating_add(record.downloaded);
        if let Some(point) = points.iter_mut().find(|p| p.tracing_id == record.tracing_id) {
            point.started_at = point.started_at.min(record.started_at);
            point.rows = point.rows.saturating_add(rows);
            point.duration_ms = point.duration_ms.max(record.duration_ms);
            point.outcome = worse(&point.outcome, &record.outcome).to_string();
        } else if points.len() < MAX_RUNS {
            points.push(RunPoint {
                tracing_id: record.tracing_id.clone(),
                started_at: record.started_at,
                rows,
                duration_ms: record.duration_ms,
                outcome: record.outcome.clone(),
            });
        }
    }
    points.sort_by_key(|p| p.started_at);
    points
}

fn rank(outcome: &str) -> u8 {
    match outcome {
        "Failed" => 2,
        "Succeeded" => 0,
        _ => 1,
    }
}

fn worse<'a>(a: &'a str, b: &'a str) -> &'a str {
    if rank(b) > rank(a) { b } else { a }
}

/// What a panel of the chart measures of a run.
type Measure = fn(&RunPoint) -> i64;

const WIDTH: f64 = 640.0;
const PANEL: f64 = 90.0;
const LEFT: f64 = 64.0;
const TOP: f64 = 22.0;
const GAP: f64 = 34.0;

/// The chart. `None` when there is no run to show.
pub fn chart(points: &[RunPoint]) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let height = TOP + PANEL + GAP + PANEL + 40.0;
    let plot = WIDTH - LEFT - 12.0;
    let slot = plot / points.len().max(8) as f64;
    let bar = (slot * 0.7).max(2.0);
    let mut svg = String::new();
    let failed = points.iter().filter(|p| p.outcome == "Failed").count();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="chart-title"><title id="chart-title">The last {n} syncs: rows moved and duration per sync; {failed} failed</title>"#,
        n = points.len(),
    );
    let panels: [(&str, &str, Measure); 2] =
        [("Rows moved", "rows", |p| p.rows), ("Duration (ms)", "ms", |p| p.duration_ms)];
    for (index, (label, unit, value)) in panels.iter().enumerate() {
        let y0 = TOP + index as f64 * (PANEL + GAP);
        let max = points.iter().map(value).max().unwrap_or(0).max(1);
        let _ = write!(
            svg,
            r#"<text x="0" y="{ty}" class="chart-label">{label}</text><text x="{lx}" y="{my}" class="chart-axis" text-anchor="end">{max}</text><text x="{lx}" y="{by}" class="chart-axis" text-anchor="end">0</text><line x1="{LEFT}" y1="{by0}" x2="{rx}" y2="{by0}" class="chart-base"/>"#,
            ty = y0 - 6.0,
            lx = LEFT - 6.0,
            my = y0 + 10.0,
            by = y0 + PANEL,
            by0 = y0 + PANEL,
            rx = WIDTH - 12.0,
        );
        for (i, point) in points.iter().enumerate() {
            let v = value(point);
            let h = (v as f64 / max as f64 * PANEL).max(if v > 0 { 1.0 } else { 0.0 });
            let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
            let y = y0 + PANEL - h;
            let when = super::format::time_words(Some(point.started_at));
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" class="bar {tone}"><title>{when}: {v} {unit}, {outcome}</title></rect>"#,
                tone = point.outcome.to_lowercase(),
                outcome = escape(&point.outcome),
            );
            let cx = x + bar / 2.0;
            let my = y0 + PANEL - h - 8.0;
            match point.outcome.as_str() {
                "Succeeded" => {}
                // A cross for a failure, a hollow square for a cancel.
                "Failed" => {
                    let _ = write!(
                        svg,
                        r#"<path d="M{a:.1},{b:.1}L{c:.1},{d:.1}M{a:.1},{d:.1}L{c:.1},{b:.1}" class="mark-failed"/>"#,
                        a = cx - 5.0,
                        b = my - 5.0,
                        c = cx + 5.0,
                        d = my + 5.0,
                    );
                }
                _ => {
                    let _ = write!(
                        svg,
                        r#"<rect x="{a:.1}" y="{b:.1}" width="8" height="8" class="mark-cancelled"/>"#,
                        a = cx - 4.0,
                        b = my - 4.0,
                    );
                }
            }
        }
    }
    let ly = height - 12.0;
    let _ = write!(
        svg,
        r#"<path d="M{LEFT},{a}L{b},{c}M{LEFT},{c}L{b},{a}" class="mark-failed"/><text x="{t1}" y="{ly}" class="chart-axis">failed</text><rect x="{r}" y="{a}" width="8" height="8" class="mark-cancelled"/><text x="{t2}" y="{ly}" class="chart-axis">cancelled</text><text x="{rx}" y="{ly}" class="chart-axis" text-anchor="end">oldest → newest</text></svg>"#,
        a = ly - 9.0,
        b = LEFT + 10.0,
        c = ly + 1.0,
        t1 = LEFT + 16.0,
        r = LEFT + 70.0,
        t2 = LEFT + 84.0,
        rx = WIDTH - 12.0,
    );
    Some(svg)
}

/// Escapes text for SVG (XML) content.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(tracing: &str, member: &str, at: i64, rows: i64, ms: i64, outcome: &str) -> RunRecord {
        RunRecord {
            group: "g".into(),
            member: member.into(),
            tracing_id: tracing.into(),
            started_at: at,
            duration_ms: ms,
            uploaded: rows,
            downloaded: 0,
            conflicts: 0,
            outcome: outcome.into(),
        }
    }

    #[test]
    fn member_records_fold_into_runs_oldest_first() {
        let records = [
            record("t2", "a", 20, 5, 30, "Succeeded"),
            record("t2", "b", 21, 7, 50, "Failed"),
            record("t1", "a", 10, 1, 10, "Succeeded"),
        ];
        let points = runs(&records);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].tracing_id, "t1");
        assert_eq!((points[1].rows, points[1].duration_ms, points[1].outcome.as_str()), (12, 50, "Failed"));
    }

    #[test]
    fn failures_are_marked_with_a_shape_and_named_in_words() {
        let points = runs(&[record("t1", "a", 10, 3, 10, "Failed"), record("t0", "a", 5, 2, 9, "Succeeded")]);
        let svg = chart(&points).unwrap();
        assert_eq!(svg.matches(r#"class="mark-failed""#).count(), 2 + 1, "one cross per panel and one in the legend");
        assert!(svg.contains("3 rows, Failed"));
        assert!(svg.contains("1 failed"));
        assert!(chart(&[]).is_none());
    }
}
