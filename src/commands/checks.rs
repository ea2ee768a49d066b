//! The rows of a `doctor` report, shared by `doctor` and `doctor --image`: a status, a detail,
//! the fix for a row that is not ok, and rendering as a table or as JSON lines.

use std::fmt::Write as _;
use std::io::Write;

use serde_json::json;

use crate::config::LogFormat;

/// The fix for a request the API server took and never answered, after it had answered the
/// connection check: both doctors give it.
pub const API_SERVER_STOPPED_FIX: &str = "the API server answered the connection check, then stopped: check its health (kubectl get --raw /readyz) and its load, or an admission webhook or proxy in front of it that holds requests";

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
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5);
    let mut out = match format {
        LogFormat::Json => String::new(),
        LogFormat::Text => header(width, result_width),
    };
    for r in rows {
        out += &row_text(r, format, width, result_width);
    }
    out
}

/// The table's header line, for a CHECK column `width` wide.
fn header(width: usize, result_width: usize) -> String {
    let (width, rw) = (width.max(5), result_width);
    format!("{:width$}  {:rw$}  DETAIL\n", "CHECK", "RESULT")
}

/// One row as the table shows it (with its fix line), or as one JSON line.
fn row_text(r: &Row, format: LogFormat, width: usize, result_width: usize) -> String {
    match format {
        LogFormat::Json => {
            json!({
                "check": r.name,
                "result": r.status.label().to_ascii_lowercase(),
                "code": r.code,
                "detail": r.detail,
                "fix": if r.status == Status::Ok || r.fix.is_empty() { None } else { Some(&r.fix) },
            })
            .to_string()
                + "\n"
        }
        LogFormat::Text => {
            let (width, rw) = (width.max(5), result_width);
            let mut out = format!(
                "{:width$}  {:rw$}  {}\n",
                r.name,
                r.status.label(),
                r.detail.replace('\n', " ")
            );
            if r.status != Status::Ok && !r.fix.is_empty() {
                let _ = writeln!(out, "{:width$}  {:rw$}  fix: {}", "", "", r.fix);
            }
            out
        }
    }
}

/// The rows so far, each written to `out` the moment it is added, so that a slow step shows
/// what came before it. The table's CHECK column is as wide as the longest name the caller
/// expects (`width`), since later rows cannot widen lines already written.
pub struct Report<'a> {
    rows: Vec<Row>,
    out: &'a mut dyn Write,
    format: LogFormat,
    width: usize,
    result_width: usize,
}

impl<'a> Report<'a> {
    pub fn new(
        out: &'a mut dyn Write,
        format: LogFormat,
        width: usize,
        result_width: usize,
    ) -> Report<'a> {
        if format == LogFormat::Text {
            emit(out, &header(width, result_width));
        }
        Report {
            rows: Vec::new(),
            out,
            format,
            width,
            result_width,
        }
    }

    pub fn push(&mut self, row: Row) {
        let text = row_text(&row, self.format, self.width, self.result_width);
        emit(self.out, &text);
        self.rows.push(row);
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
}

/// Writes and flushes; a closed stdout (`| head`) must not stop the checks.
fn emit(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Whether no row failed (unknown, skipped and warning rows do not fail).
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.status != Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, status: Status, fix: &str) -> Row {
        Row {
            name: name.into(),
            status,
            code: None,
            detail: format!("{name} detail"),
            fix: fix.into(),
        }
    }

    #[test]
    fn a_streamed_report_reads_like_the_rendered_one() {
        let rows = vec![
            row("Image", Status::Ok, ""),
            row("Registry endpoint", Status::Fail, "open port 443"),
            row("AWS identity", Status::Unknown, "allow it"),
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            let mut out = Vec::new();
            let mut report = Report::new(&mut out, format, 17, 7);
            for r in &rows {
                report.push(r.clone());
            }
            assert_eq!(report.rows().len(), 3);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                render(&rows, format, 7),
                "{format:?}"
            );
        }
    }
}
