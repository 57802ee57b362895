//! Dispatch latency: from the client sending `POST /api/v1/tasks` to the worker starting
//! the task's step (the worker's first log line), for ping tasks one after the other on
//! a platform. Next to it: a bare RabbitMQ round trip (publish with confirm, consume).

use std::time::Duration;

use anyhow::Context;

use crate::broker::BareBroker;
use crate::setup::{self, between, time};
use crate::stats::{Samples, print_percentiles};

#[derive(clap::Args)]
pub struct Args {
    /// Ping tasks, each sent after the previous one finished.
    #[arg(long, default_value_t = 300)]
    pub tasks: usize,
}

/// How often a running task is asked about; short, so the next task is not held up.
const POLL: Duration = Duration::from_millis(5);

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("== dispatch: {} sequential ping tasks on one platform", args.tasks);
    crate::print_load();
    let system = setup::system_with_server(Default::default()).await;
    setup::empty_platform(&system, "dispatch").await?;
    let worker = format!("{}.http", system.server);

    let mut sent_at = Vec::with_capacity(args.tasks);
    for _ in 0..args.tasks {
        let (id, sent) = setup::post_task(&system, "@platform_dispatch", "ping").await?;
        setup::wait_success(&system, &id, POLL).await?;
        sent_at.push((id, sent));
    }

    // The whole, and its three stages per task (so noise in one stage does not blur the next).
    let (mut to_worker, mut to_finished) = (Vec::new(), Vec::new());
    let (mut to_created, mut created_to_started, mut started_to_worker) = (Vec::new(), Vec::new(), Vec::new());
    for (id, sent) in &sent_at {
        let view = setup::get(&system, &format!("/api/v1/tasks/{id}")).await?;
        let log = setup::get(&system, &format!("/api/v1/tasks/{id}/log")).await?;
        let first = log["items"]
            .as_array()
            .and_then(|items| items.iter().find(|line| line["source"] == worker.as_str()))
            .with_context(|| format!("task {id} has no log line from {worker}: {log}"))?;
        let (created, started, worker_at) =
            (time(&view, "created_at")?, time(&view, "started_at")?, time(first, "at")?);
        to_worker.push(between(*sent, worker_at));
        to_created.push(between(*sent, created));
        created_to_started.push(between(created, started));
        started_to_worker.push(between(started, worker_at));
        to_finished.push(between(*sent, time(&view, "finished_at")?));
    }

    let bare = BareBroker::new().round_trips(args.tasks).await?;
    println!("  system (client clock at POST; worker and API timestamps, same machine):");
    print_percentiles("POST sent -> worker starts the step", &Samples::new(to_worker));
    print_percentiles("  POST sent -> task row created", &Samples::new(to_created));
    print_percentiles("  task row created -> scheduler starts it", &Samples::new(created_to_started));
    print_percentiles("  scheduler starts it -> worker starts", &Samples::new(started_to_worker));
    print_percentiles("POST sent -> task finished_at (scheduler)", &Samples::new(to_finished));
    println!("  reference (bare RabbitMQ, own vhost, quorum queue, persistent, confirms):");
    print_percentiles("publish -> consumer receives", &Samples::new(bare));
    Ok(())
}
