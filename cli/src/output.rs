//! How things look on stdout: log lines, tables, summaries, JSON.

use std::io::{IsTerminal, Write};

use aegir_contract::LogLevel;
use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Local, Utc};
use serde_json::Value;
use tabwriter::TabWriter;

use crate::api::LogEntry;

/// Colour only for a person at a terminal, and never when `NO_COLOR` is set.
pub fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn level_style(level: LogLevel) -> Style {
    match level {
        LogLevel::Info => Style::new(),
        LogLevel::Warning => AnsiColor::Yellow.on_default(),
        LogLevel::Error => AnsiColor::Red.on_default().bold(),
        LogLevel::Success => AnsiColor::Green.on_default(),
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Info => "info",
        LogLevel::Warning => "warning",
        LogLevel::Error => "error",
        LogLevel::Success => "success",
    }
}

/// `[HH:MM:SS] level  source: message`, in local time.
pub fn log_line(entry: &LogEntry, colour: bool) -> String {
    let time = entry.at.with_timezone(&Local).format("%H:%M:%S");
    let level = format!("{:<7}", level_name(entry.level));
    let level = if colour {
        let style = level_style(entry.level);
        format!("{style}{level}{style:#}")
    } else {
        level
    };
    format!("[{time}] {level}  {}: {}", entry.source, entry.message)
}

/// A timestamp for tables and summaries, in local time.
pub fn time(at: &DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn time_or_dash(at: Option<&DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), time)
}

/// The API's JSON, indented.
pub fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("a JSON value always serializes"));
}

/// Columns aligned with elastic tabstops. Cells have their tabs and line breaks
/// replaced, so one cell cannot break the layout.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(2);
    let clean = |cell: &str| cell.replace(['\t', '\n', '\r'], " ");
    let _ = writeln!(tw, "{}", headers.join("\t"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| clean(c)).collect();
        let _ = writeln!(tw, "{}", cells.join("\t"));
    }
    let bytes = tw.into_inner().expect("writing to memory cannot fail");
    String::from_utf8(bytes).expect("the cells are UTF-8")
}

/// `key   value` lines under a title.
pub fn summary(title: &str, fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{title}\n");
    for (key, value) in fields {
        out.push_str(&format!("  {key:<width$}  {value}\n"));
    }
    out
}

/// A page footer when the list is longer than what was shown.
pub fn paging_note(shown: usize, offset: u64, total: u64) -> Option<String> {
    let end = offset + shown as u64;
    (offset > 0 || end < total).then(|| format!("({}-{} of {total}; see --limit and --offset)", offset + 1, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: LogLevel) -> LogEntry {
        LogEntry {
            seq: 1,
            at: "2026-01-02T03:04:05Z".parse().unwrap(),
            level,
            source: "server_master.http".into(),
            step: Some(0),
            message: "nginx -t passed".into(),
        }
    }

    #[test]
    fn log_lines_read_time_level_source_message() {
        let line = log_line(&entry(LogLevel::Info), false);
        let time = "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap().with_timezone(&Local).format("%H:%M:%S");
        assert_eq!(line, format!("[{time}] info     server_master.http: nginx -t passed"));
        let line = log_line(&entry(LogLevel::Warning), false);
        assert!(line.contains("] warning  server_master.http: "), "{line}");
    }

    #[test]
    fn colour_codes_only_when_asked() {
        assert!(!log_line(&entry(LogLevel::Error), false).contains('\u{1b}'));
        assert!(log_line(&entry(LogLevel::Error), true).contains('\u{1b}'));
    }

    #[test]
    fn tables_align_columns() {
        let text = table(&["ID", "STATUS"], &[vec!["1".into(), "queued".into()], vec!["22".into(), "fa\niled".into()]]);
        assert_eq!(text, "ID  STATUS\n1   queued\n22  fa iled\n");
    }

    #[test]
    fn paging_notes_only_for_partial_lists() {
        assert_eq!(paging_note(2, 0, 2), None);
        assert_eq!(paging_note(50, 0, 120).as_deref(), Some("(1-50 of 120; see --limit and --offset)"));
    }
}
