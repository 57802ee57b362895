//! `aegir run @CONTEXT TASK` (or `aegir @CONTEXT TASK`): queue a task, follow its log
//! live, and exit with its outcome.

use std::process::ExitCode;

use crate::api::{Api, TaskStatus, TaskView};
use serde_json::{Map, Value};

use crate::args::{RunArgs, TaskOptionArgs};
use crate::error::{CliError, EXIT_TASK_FAILED};
use crate::{log_stream, output};

pub async fn run(api: &Api, args: RunArgs) -> Result<ExitCode, CliError> {
    let task = api.create_task(&args.context, args.task, options(&args.options)).await?;
    println!("task {} queued: {} {}", task.id, task.task, task.context);
    follow(api, &task).await
}

/// The options given, as the API takes them; the API refuses those the task does not take.
fn options(args: &TaskOptionArgs) -> Map<String, Value> {
    let mut options = Map::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            options.insert(key.to_owned(), Value::String(value));
        }
    };
    set("backup", args.backup.map(|id| id.to_string()));
    set("compression", args.compression.map(|c| c.to_string()));
    set("new_uri", args.new_uri.as_ref().map(ToString::to_string));
    set("platform", args.platform.as_ref().map(ToString::to_string));
    set("db_server", args.db_server.as_ref().map(ToString::to_string));
    for (key, on) in [("force", args.force), ("skip_backup", args.skip_backup), ("renew", args.renew)] {
        if on {
            options.insert(key.to_owned(), Value::Bool(true));
        }
    }
    if args.bulk {
        options.insert("lane".to_owned(), Value::String("bulk".to_owned()));
    }
    options
}

/// Prints the log of a task as it comes, then its outcome. Shared with `aegir task`.
pub async fn follow(api: &Api, task: &TaskView) -> Result<ExitCode, CliError> {
    let colour = output::colour_wanted();
    let finished = log_stream::follow(api, task.id, |entry| println!("{}", output::log_line(entry, colour))).await?;
    Ok(report_outcome(&finished))
}

/// The last word on a finished task: success on stdout, failure and its reason on stderr.
pub fn report_outcome(task: &TaskView) -> ExitCode {
    match task.status {
        TaskStatus::Success => {
            println!("{} of {} succeeded (task {})", task.task, task.context, task.id);
            ExitCode::SUCCESS
        }
        status => {
            let reason = task.reason.as_deref().unwrap_or("no reason was recorded");
            let what = match status {
                TaskStatus::Failed => "failed",
                TaskStatus::Cancelled => "was cancelled",
                _ => "did not finish",
            };
            eprintln!("error: {} of {} {what} (task {}): {reason}", task.task, task.context, task.id);
            ExitCode::from(EXIT_TASK_FAILED)
        }
    }
}
