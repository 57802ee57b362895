//! What can go wrong, and the exit code each case gets:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (a task ran and succeeded) |
//! | 1 | the task failed |
//! | 2 | bad usage or input, refused before any request |
//! | 3 | the API answered with an error |
//! | 4 | the API could not be reached |

use std::process::ExitCode;

pub const EXIT_TASK_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_API_ERROR: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Input refused locally; `field` is the option or argument as the user wrote it.
    #[error("{field}: {message}")]
    Usage { field: String, message: String },

    /// The API answered 4xx/5xx with its error body.
    #[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Api { status: u16, field: Option<String>, message: String },

    /// The API answered something that is not what the REST contract describes.
    #[error("the API at {api} answered something unexpected: {message}")]
    Unexpected { api: String, message: String },

    /// No answer at all.
    #[error(
        "cannot reach the Aegir API at {api} ({origin}): {cause}\n\
         hint: start task-api (`sudo deploy/quickstart.sh`), or point the CLI at it with \
         `--api URL` or `AEGIR_API=URL`"
    )]
    Unreachable { api: String, origin: String, cause: String },

    /// A task's log stream kept breaking; the task itself goes on.
    #[error(
        "lost the log stream of task {task} after {tries} tries ({cause}); the task goes on without the CLI: \
         follow it again with `aegir task {task}`"
    )]
    StreamLost { task: uuid::Uuid, tries: u32, cause: String },
}

impl CliError {
    pub fn usage(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Usage { field: field.into(), message: message.into() }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. } => EXIT_USAGE,
            CliError::Api { .. } | CliError::Unexpected { .. } => EXIT_API_ERROR,
            CliError::Unreachable { .. } | CliError::StreamLost { .. } => EXIT_UNREACHABLE,
        }
    }

    /// Prints the error on stderr and gives the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {self}");
        ExitCode::from(self.exit_code())
    }
}

/// An error and the errors that caused it, on one line: reqwest's own message alone
/// ("error sending request") does not say that the connection was refused.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_field_then_message() {
        let e = CliError::Api { status: 422, field: Some("root".into()), message: "path is outside".into() };
        assert_eq!(e.to_string(), "root: path is outside");
        assert_eq!(e.exit_code(), 3);
        let e = CliError::Api { status: 503, field: None, message: "database is down".into() };
        assert_eq!(e.to_string(), "database is down");
    }

    #[test]
    fn unreachable_says_where_and_how_to_fix_it() {
        let e = CliError::Unreachable {
            api: "http://127.0.0.1:9".into(),
            origin: "from AEGIR_API".into(),
            cause: "connection refused".into(),
        };
        let text = e.to_string();
        assert!(text.contains("http://127.0.0.1:9"), "{text}");
        assert!(text.contains("AEGIR_API"), "{text}");
        assert_eq!(e.exit_code(), 4);
    }
}
