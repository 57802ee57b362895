//! Sustained throughput of no-op tasks end to end: each ping task is requested over the
//! API, planned by the scheduler, run by the http-worker, and its events persisted by
//! task-api. Tasks are spread over many platforms (the system runs one task at a time
//! per entity) with a bounded number of requests in flight. Next to it: the bare
//! broker's rate for confirmed publishes consumed with acks, and the CPU each process
//! spent per task, which bounds the rate on a small machine.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::broker::BareBroker;
use crate::cpu::CpuTimes;
use crate::setup;
use crate::stats::rate;

#[derive(clap::Args)]
pub struct Args {
    /// Ping tasks in all.
    #[arg(long, default_value_t = 5000)]
    pub tasks: usize,
    /// Platforms (on one server) the tasks are spread over.
    #[arg(long, default_value_t = 200)]
    pub platforms: usize,
    /// Task requests (and bare publishes) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "== throughput: {} ping tasks over {} platforms, {} requests in flight",
        args.tasks, args.platforms, args.in_flight
    );
    crate::print_load();
    let platforms = args.platforms.max(1);
    let system = setup::system_with_server(Default::default()).await;
    for i in 0..platforms {
        setup::empty_platform(&system, &format!("t{i}")).await?;
    }

    let cpu_before = CpuTimes::now(&system);
    let start = Instant::now();
    let system = &system;
    stream::iter(0..args.tasks)
        .map(|i| async move { setup::post_task(system, &format!("@platform_t{}", i % platforms), "ping").await })
        .buffer_unordered(args.in_flight.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let submitted = start.elapsed();
    loop {
        let done = count(system, "success").await?;
        if done >= args.tasks as u64 {
            break;
        }
        let failed = count(system, "failed").await?;
        if failed > 0 {
            bail!("{failed} ping tasks failed; see GET /api/v1/tasks?status=failed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_done = start.elapsed();
    let cpu_after = CpuTimes::now(system);

    let bare = BareBroker::new().rate(args.tasks, args.in_flight).await?;
    println!("  system (first request -> all tasks `success` in the API, polled every 50 ms):");
    println!("  {:<44} {:>10.1} tasks/s  ({:.2} s)", "end to end", rate(args.tasks, all_done), all_done.as_secs_f64());
    println!(
        "  {:<44} {:>10.1} tasks/s  ({:.2} s)",
        "  of which accepted by the API",
        rate(args.tasks, submitted),
        submitted.as_secs_f64()
    );
    cpu_before.print_per_task(&cpu_after, args.tasks);
    println!("  reference (bare RabbitMQ, {} messages, confirms, {} in flight, acked):", args.tasks, args.in_flight);
    println!("  {:<44} {:>10.1} msgs/s", "publish + consume", bare);
    Ok(())
}

/// Tasks in `status`, from the list endpoint's `total`.
async fn count(system: &aegir_e2e::System, status: &str) -> anyhow::Result<u64> {
    let page = setup::get(system, &format!("/api/v1/tasks?status={status}&limit=1")).await?;
    Ok(page["total"].as_u64().unwrap_or(0))
}
