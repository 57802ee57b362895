//! Running the programs a worker drives (nginx, apachectl, php, …): always an argument
//! list, never a shell string; always bounded in time.

use std::ffi::OsStr;
use std::time::Duration;

/// What a finished program said.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// stderr and stdout together, trimmed; what to show a user when it failed.
    pub fn text(&self) -> String {
        let mut text = self.stderr.trim().to_owned();
        if !self.stdout.trim().is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(self.stdout.trim());
        }
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` is not installed or not on PATH")]
    NotFound { program: String },
    #[error("cannot run `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{program}` did not finish within {} s", timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
}

/// Runs `program` with `args` and waits for it, killing it after `timeout`.
pub async fn run<I, S>(program: &str, args: I, timeout: Duration) -> Result<CommandOutput, CommandError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => return Err(CommandError::Timeout { program: program.into(), timeout }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CommandError::NotFound { program: program.into() });
        }
        Ok(Err(source)) => return Err(CommandError::Spawn { program: program.into(), source }),
        Ok(Ok(output)) => output,
    };
    Ok(CommandOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
