//! `aegir tasks` (a table) and `aegir task ID` (one task and its log).

use std::process::ExitCode;

use serde_json::json;

use crate::api::{Api, Page, TaskFilter, TaskView};
use crate::args::{CancelArgs, TaskArgs, TasksArgs};
use crate::commands::run;
use crate::error::CliError;
use crate::output::{self, summary, time, time_or_dash};

pub async fn list(api: &Api, args: TasksArgs) -> Result<ExitCode, CliError> {
    let filter = TaskFilter { context: args.context, status: args.status };
    let paging = args.paging.paging();
    let value = api.tasks(&filter, paging).await?;
    if args.json {
        output::print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let page: Page<TaskView> = api.typed(value)?;
    if page.items.is_empty() && paging.offset == 0 {
        println!("no tasks");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.context.clone(),
                t.task.clone(),
                t.status.as_str().to_owned(),
                time(&t.created_at),
                t.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", output::table(&["ID", "CONTEXT", "TASK", "STATUS", "CREATED", "REASON"], &rows));
    if let Some(note) = output::paging_note(rows.len(), paging.offset, page.total) {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks to cancel a waiting task and follows it until it ends.
pub async fn cancel(api: &Api, args: CancelArgs) -> Result<ExitCode, CliError> {
    let task = api.cancel_task(args.id).await?;
    println!("cancel of task {} requested: {} {}", task.id, task.task, task.context);
    run::follow(api, &task).await
}

pub async fn show(api: &Api, args: TaskArgs) -> Result<ExitCode, CliError> {
    let value = api.task(args.id).await?;
    if args.json {
        let log = api.task_log(args.id).await?;
        let items = log.get("items").cloned().unwrap_or_else(|| json!([]));
        output::print_json(&json!({ "task": value, "log": items }));
        return Ok(ExitCode::SUCCESS);
    }
    let task: TaskView = api.typed(value)?;
    print!(
        "{}",
        summary(
            &format!("task {}  {} {}", task.id, task.task, task.context),
            &[
                ("status", task.status.as_str().to_owned()),
                ("created", time(&task.created_at)),
                ("started", time_or_dash(task.started_at.as_ref())),
                ("finished", time_or_dash(task.finished_at.as_ref())),
            ],
        )
    );
    println!();
    if !task.status.is_finished() {
        // The live stream replays the stored lines first, so nothing is fetched twice.
        return run::follow(api, &task).await;
    }
    let colour = output::colour_wanted();
    for entry in api.log_entries(api.task_log(args.id).await?)? {
        println!("{}", output::log_line(&entry, colour));
    }
    Ok(run::report_outcome(&task))
}
