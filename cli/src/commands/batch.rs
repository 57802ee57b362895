//! `aegir batch @PLATFORM verify|migrate`: one task on every site of a platform, with
//! the summary printed as it changes until the batch ends.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::args::BatchArgs;
use crate::error::{CliError, EXIT_TASK_FAILED};

pub async fn run(api: &Api, args: BatchArgs) -> Result<ExitCode, CliError> {
    let mut body = json!({
        "platform": args.platform.to_string(),
        "task": args.task.to_string(),
        "parallel": args.parallel,
        "max_failures": args.max_failures,
    });
    if let Some(to) = &args.to {
        body["to_platform"] = json!(to.to_string());
    }
    let batch = api.create_batch(&body).await?;
    let id = batch["id"].as_str().unwrap_or_default().to_owned();
    println!("batch {id}: {} every site of {} ({} sites)", args.task, args.platform, batch["summary"]["total"]);
    let mut last = String::new();
    let batch = loop {
        let batch = api.get_json(&["batches", &id], &[]).await?;
        let line = summary(&batch["summary"]);
        if line != last {
            println!("{line}");
            last = line;
        }
        if batch["status"] != "running" {
            break batch;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for failure in batch["failures"].as_array().into_iter().flatten() {
        eprintln!(
            "failed: @{} (task {}): {}",
            failure["site"].as_str().unwrap_or_default(),
            failure["task_id"].as_str().unwrap_or("-"),
            failure["reason"].as_str().unwrap_or("no reason recorded")
        );
    }
    let failed = batch["summary"]["failed"].as_i64().unwrap_or(0);
    if batch["status"] == "stopped" {
        eprintln!("error: batch {id} stopped after {failed} failures; the sites it did not reach were skipped");
        return Ok(ExitCode::from(EXIT_TASK_FAILED));
    }
    if failed > 0 {
        eprintln!("error: batch {id} ended with {failed} failed");
        return Ok(ExitCode::from(EXIT_TASK_FAILED));
    }
    println!("batch {id} done: every site succeeded");
    Ok(ExitCode::SUCCESS)
}

fn summary(s: &Value) -> String {
    format!(
        "{} done, {} failed, {} running, {} waiting, {} skipped (of {})",
        s["success"], s["failed"], s["running"], s["waiting"], s["skipped"], s["total"]
    )
}
