//! Running an application's own PHP tools (installers, login links, cron) with the
//! platform's PHP. Secrets go through environment variables or 0600 files that are
//! removed afterwards, never through arguments (which every user sees in `ps`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aegir_contract::Secret;
use aegir_worker::{StepError, StepLog};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

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
    run_with(php, job, None).await
}

/// Like [`run`], writing each line the program prints into the task log as it comes
/// (for long runs such as database updates, which a user wants to watch).
pub async fn run_logged(php: &str, job: PhpRun, log: &StepLog) -> Result<PhpOutput, StepError> {
    run_with(php, job, Some(log)).await
}

async fn run_with(php: &str, job: PhpRun, log: Option<&StepLog>) -> Result<PhpOutput, StepError> {
    for (path, secret) in &job.secret_files {
        files::write(path, secret.expose().as_bytes(), 0o600, Ownership::default())?;
    }
    let result = run_inner(php, &job, log).await;
    for (path, _) in &job.secret_files {
        let _ = files::remove_file(path);
    }
    result
}

/// Whether PHP stopped on a fatal error, which some applications' shutdown handlers
/// turn into a normal exit.
fn has_fatal_error(text: &str) -> bool {
    text.lines().map(str::trim_start).any(|l| l.starts_with("PHP Fatal error:") || l.starts_with("Fatal error:"))
}

impl PhpRun {
    /// `text` with the run's passwords masked: applications may echo what they were
    /// given. (The site's uri and database name are in the environment too, and are not
    /// secret: masking them would hide what the output is about.)
    fn mask(&self, text: &str) -> String {
        let mut masked = text.to_owned();
        let passwords = self.env.iter().filter(|(name, _)| name.contains("PASSWORD")).map(|(_, s)| s);
        for secret in passwords.chain(self.secret_files.iter().map(|(_, s)| s)) {
            if secret.expose().len() >= 6 {
                masked = masked.replace(secret.expose(), "********");
            }
        }
        masked
    }
}

/// Sends each line of `stream` (stderr when `is_err`) to `lines`, as it is printed.
async fn forward_lines<R>(stream: R, is_err: bool, lines: mpsc::Sender<(bool, String)>)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                if lines.send((is_err, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn run_inner(php: &str, job: &PhpRun, log: Option<&StepLog>) -> Result<PhpOutput, StepError> {
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
    let (tx, mut rx) = mpsc::channel(64);
    let readers = [
        child.stdout.take().map(|s| tokio::spawn(forward_lines(s, false, tx.clone()))),
        child.stderr.take().map(|s| tokio::spawn(forward_lines(s, true, tx))),
    ];
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let work = async {
        while let Some((is_err, line)) = rx.recv().await {
            if let Some(log) = log
                && !line.trim().is_empty()
                && job.success_marker.is_none_or(|m| line.trim() != m)
            {
                let shown = job.mask(&plain(&line));
                if is_err { log.warning(shown).await } else { log.info(shown).await }
            }
            let text = if is_err { &mut stderr } else { &mut stdout };
            text.push_str(&line);
            text.push('\n');
        }
        child.wait().await
    };
    let status = tokio::time::timeout(job.timeout, work)
        .await
        .map_err(|_| StepError::permanent(format!("{} did not finish within {} s", job.what, job.timeout.as_secs())))?
        .map_err(|e| StepError::permanent(format!("{} could not be run: {e}", job.what)))?;
    for reader in readers.into_iter().flatten() {
        reader.abort();
    }
    let marked = job.success_marker.is_none_or(|m| stdout.lines().any(|l| l.trim() == m));
    let fatal = has_fatal_error(&stdout) || has_fatal_error(&stderr);
    if status.success() && marked && !fatal {
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
    let said = job.mask(&said);
    let how = if status.success() && fatal {
        "stopped on a PHP fatal error".to_owned()
    } else {
        format!("exit {:?}", status.code())
    };
    Err(StepError::permanent(format!("{} failed ({how}):\n{said}", job.what)))
}

/// PHP source for a single-quoted string literal.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(code: &str) -> PhpRun {
        let env =
            vec![("AEGIR_SITE_URI", Secret::new("example.com")), ("AEGIR_DB_PASSWORD", Secret::new("Sup3rSecretPw"))];
        PhpRun::inline("the test run", code.to_owned(), env, &std::env::temp_dir(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_failure_says_what_php_said_without_the_password() {
        let code = "echo getenv('AEGIR_SITE_URI') . ' ' . getenv('AEGIR_DB_PASSWORD') . \"\\n\"; exit(3);";
        let err = run("php", job(code)).await.err().expect("exit 3 is a failure");
        assert!(err.reason.starts_with("the test run failed (exit Some(3))"), "{}", err.reason);
        assert!(err.reason.contains("example.com ********"), "{}", err.reason);
        assert!(!err.reason.contains("Sup3rSecretPw"));
    }

    #[tokio::test]
    async fn a_fatal_error_fails_the_run_even_when_php_exits_0() {
        // A shutdown handler that exits 0, as some applications' error pages do.
        let code = "register_shutdown_function(function () { exit(0); }); aegir_no_such_function();";
        let err = run("php", job(code)).await.err().expect("a fatal error is a failure");
        assert!(err.reason.contains("stopped on a PHP fatal error"), "{}", err.reason);
        assert!(err.reason.contains("aegir_no_such_function"), "{}", err.reason);
    }

    #[tokio::test]
    async fn success_needs_the_marker_when_one_is_expected() {
        let out = run("php", job("echo \"working\\nDONE\\n\";").expecting("DONE")).await.unwrap();
        assert_eq!(out.stdout, "working\nDONE\n");
        assert!(run("php", job("echo 'working';").expecting("DONE")).await.is_err());
    }

    #[test]
    fn quoting_keeps_php_strings_closed() {
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote(r"a\"), r"'a\\'");
    }
}
