//! The rows of a `doctor` report, shared by `doctor` and `doctor --image`: a status, a detail,
//! the fix for a row that is not ok, and rendering as a table or as JSON lines.

use std::fmt::Write as _;

use serde_json::json;

use crate::config::LogFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but worth a look.
    Warn,
    Fail,
    /// Could not check (not allowed to look): not a failure.
    Unknown,
    /// Not run because a step it needs failed.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Unknown => "unknown",
            Status::Skip => "skip",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub status: Status,
    /// The AWS (or Kubernetes) error code behind a failure, e.g. `AccessDeniedException`.
    pub code: Option<String>,
    pub detail: String,
    /// What to change, for a row that is not ok.
    pub fix: String,
}

/// The report as a table whose RESULT column is `result_width` wide, with the fix under each
/// row that needs one; or as one JSON object per row.
pub fn render(rows: &[Row], format: LogFormat, result_width: usize) -> String {
    match format {
        LogFormat::Json => rows
            .iter()
            .map(|r| {
                json!({
                    "check": r.name,
                    "result": r.status.label().to_ascii_lowercase(),
                    "code": r.code,
                    "detail": r.detail,
                    "fix": if r.status == Status::Ok || r.fix.is_empty() { None } else { Some(&r.fix) },
                })
                .to_string()
                    + "\n"
            })
            .collect(),
        LogFormat::Text => {
            let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
            let rw = result_width;
            let mut out = format!("{:width$}  {:rw$}  DETAIL\n", "CHECK", "RESULT");
            for r in rows {
                let _ = writeln!(
                    out,
                    "{:width$}  {:rw$}  {}",
                    r.name,
                    r.status.label(),
                    r.detail.replace('\n', " ")
                );
                if r.status != Status::Ok && !r.fix.is_empty() {
                    let _ = writeln!(out, "{:width$}  {:rw$}  fix: {}", "", "", r.fix);
                }
            }
            out
        }
    }
}

/// Whether no row failed (unknown, skipped and warning rows do not fail).
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.status != Status::Fail)
}
