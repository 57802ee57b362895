//! Running an application's own PHP tools (installers, login links, cron) with the
//! platform's PHP. Secrets go through environment variables or 0600 files that are
//! removed afterwards, never through arguments (which every user sees in `ps`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aegir_contract::Secret;
use aegir_worker::StepError;
use tokio::io::AsyncWriteExt;

use crate::files::{self, Ownership};

/// One run of `php` for a site.
#[derive(Debug, Default)]
pub struct PhpRun {
    /// What it does, for the log: `the WordPress installer`.
    pub what: &'static str,
    /// Arguments after `php`.
    pub args: Vec<String>,
    pub env: Vec<(&'static str, Secret)>,
    pub cwd: PathBuf,
    /// Files holding a secret, written 0600 before the run and removed after it.
    pub secret_files: Vec<(PathBuf, Secret)>,
    /// The run succeeded only if its output contains this line; PHP applications often
    /// print an error page and still exit 0.
    pub success_marker: Option<&'static str>,
    /// Fed to the program's standard input.
    pub stdin: Option<String>,
    pub timeout: Duration,
}

impl PhpRun {
    /// `php -r CODE` from `cwd`: the way our installers, login links and cron runs call
    /// into an application.
    pub fn inline(
        what: &'static str,
        code: String,
        env: Vec<(&'static str, Secret)>,
        cwd: &std::path::Path,
        timeout: Duration,
    ) -> PhpRun {
        PhpRun { what, args: vec!["-r".into(), code], env, cwd: cwd.to_path_buf(), timeout, ..Default::default() }
    }

    /// Counts the run as a success only when its output holds `marker`.
    pub fn expecting(self, marker: &'static str) -> PhpRun {
        PhpRun { success_marker: Some(marker), ..self }
    }
}

/// What a successful run printed on stdout.
pub struct PhpOutput {
    pub stdout: String,
}

/// Keeps the last lines of a long output, which is where the reason is.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Strips markup from an error page so the reason reads as text.
fn plain(text: &str) -> String {
    let tags = regex::Regex::new(r"<[^>]*>").expect("valid pattern");
    tags.replace_all(text, " ").into_owned()
}

pub async fn run(php: &str, job: PhpRun) -> Result<PhpOutput, StepError> {
    for (path, secret) in &job.secret_files {
        files::write(path, secret.expose().as_bytes(), 0o600, Ownership::default())?;
    }
    let result = run_inner(php, &job).await;
    for (path, _) in &job.secret_files {
        let _ = files::remove_file(path);
    }
    result
}

async fn run_inner(php: &str, job: &PhpRun) -> Result<PhpOutput, StepError> {
    let mut command = tokio::process::Command::new(php);
    command
        .args(&job.args)
        .current_dir(&job.cwd)
        .stdin(if job.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in &job.env {
        command.env(key, value.expose());
    }
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StepError::permanent(format!(
                "`{php}` is not installed on this server; install the php-cli package (or set AEGIR_PHP)"
            ))
        } else {
            StepError::permanent(format!("cannot run `{php}` for {}: {e}", job.what))
        }
    })?;
    if let (Some(input), Some(mut stdin)) = (&job.stdin, child.stdin.take()) {
        let _ = stdin.write_all(input.as_bytes()).await;
        drop(stdin);
    }
    let output = tokio::time::timeout(job.timeout, child.wait_with_output())
        .await
        .map_err(|_| StepError::permanent(format!("{} did not finish within {} s", job.what, job.timeout.as_secs())))?
        .map_err(|e| StepError::permanent(format!("{} could not be run: {e}", job.what)))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let marked = job.success_marker.is_none_or(|m| stdout.lines().any(|l| l.trim() == m));
    if output.status.success() && marked {
        return Ok(PhpOutput { stdout });
    }
    let mut said = tail(&plain(&stderr), 15);
    let out = tail(&plain(&stdout), 15);
    if !out.is_empty() {
        if !said.is_empty() {
            said.push('\n');
        }
        said.push_str(&out);
    }
    // The application may echo what it was given; keep the secrets out of the reason.
    for secret in job.env.iter().map(|(_, s)| s).chain(job.secret_files.iter().map(|(_, s)| s)) {
        if secret.expose().len() >= 6 {
            said = said.replace(secret.expose(), "********");
        }
    }
    Err(StepError::permanent(format!("{} failed (exit {:?}):\n{said}", job.what, output.status.code())))
}

/// PHP source for a single-quoted string literal.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_php_strings_closed() {
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote(r"a\"), r"'a\\'");
    }
}
