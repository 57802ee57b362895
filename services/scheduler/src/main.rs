//! scheduler: turns requested tasks into steps, one task at a time per entity.
//!
//! ```text
//! scheduler.tasks   ── TaskRequested ──▶ accept (in batches): queue behind the entity, or start
//! scheduler.results ── StepResult    ──▶ record (in batches): next step, retry, or finish
//! scheduler.dead    ── dead letters  ──▶ fail the task they belong to
//!                                        │
//!            outbox (same transaction) ◀─┘──▶ relay ──▶ StepDispatched, TaskLog,
//!                                                      TaskStarted, TaskFinished
//! ```

mod change;
mod consumers;
mod plan;
mod requests;
mod results;
mod tasks;
mod unattended;

use std::time::Duration;

use aegir_amqp::signing::{MasterKey, Signer, load_key};
use aegir_amqp::topology::QueueName;
use aegir_amqp::{Broker, ConsumerSpec, consume};
use aegir_config::{CommonArgs, DatabaseArgs, LogFormat, SigningKeyArgs};
use aegir_postgres::Outbox;
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::consumers::Consumers;
use crate::tasks::{RetryPolicy, Tasks};

/// The scheduler's tables live in this schema of the shared database.
const SCHEMA: &str = "scheduler";

#[derive(Debug, Parser)]
#[command(name = "scheduler", about = "Runs each requested task step by step on the right servers")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    signing: SigningKeyArgs,

    /// Tries of a step that fails for a reason that may pass (first try included).
    #[arg(long, env = "AEGIR_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,

    /// Wait before the first retry of a step, in milliseconds; each later retry waits
    /// four times longer.
    #[arg(long, env = "AEGIR_RETRY_DELAY_MS", default_value_t = 2000)]
    retry_delay_ms: u64,

    /// Seconds a dispatched step may go without an answer before it fails (and its
    /// task rolls back), whatever happened to its worker. Keep it above the workers'
    /// own step timeout (AEGIR_STEP_TIMEOUT_SECS, 3600 by default).
    #[arg(long, env = "AEGIR_STEP_DEADLINE_SECS", default_value_t = 3900, value_parser = clap::value_parser!(u64).range(1..))]
    step_deadline_secs: u64,

    /// Messages handled at once per queue.
    #[arg(long, env = "AEGIR_PREFETCH", default_value_t = 32)]
    prefetch: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("scheduler", cli.common.log_format == LogFormat::Json)?;

    let master = MasterKey::new(load_key(
        "master signing key",
        "AEGIR_SIGNING_KEY",
        cli.signing.signing_key.as_deref(),
        cli.signing.signing_key_file.as_deref(),
    )?);
    let pool = aegir_postgres::connect(&cli.database.database_url, Some(SCHEMA), cli.database.database_pool).await?;
    sqlx::migrate!().run(&pool).await.context("cannot apply the scheduler's database migrations")?;

    let broker = Broker::signed(cli.common.amqp_url.clone(), "scheduler", Signer::Control(master.clone()));
    broker.ready().await;

    let shutdown = CancellationToken::new();
    let outbox = Outbox::new();
    let retry = RetryPolicy { max_attempts: cli.max_attempts, first_delay: Duration::from_millis(cli.retry_delay_ms) };
    let consumers = Consumers {
        tasks: Tasks::new(pool.clone(), outbox.clone(), retry, Duration::from_secs(cli.step_deadline_secs)),
        broker: broker.clone(),
        master,
        shutdown: shutdown.clone(),
    };

    let mut running = tokio::task::JoinSet::new();
    running.spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));
    running.spawn(forget_finished_tasks(pool.clone(), shutdown.clone()));
    running.spawn(expire_overdue_steps(consumers.tasks.clone(), cli.step_deadline_secs, shutdown.clone()));
    let deadline = Duration::from_secs(cli.step_deadline_secs);
    running.spawn(unattended::watch(pool.clone(), broker.clone(), outbox.clone(), deadline, shutdown.clone()));
    // Requests are read in the order they were sent and accepted in lanes by entity, so
    // an entity's tasks run in the order they were asked for.
    let lanes = std::sync::Arc::new(requests::Lanes::start(&consumers, &mut running));
    let spec =
        ConsumerSpec { queue: QueueName::SchedulerTasks, prefetch: cli.prefetch, in_order: true, batch_acks: true };
    let requests = {
        let consumers = consumers.clone();
        move |delivery| {
            let (consumers, lanes) = (consumers.clone(), lanes.clone());
            async move { lanes.handle(&consumers, delivery).await }
        }
    };
    running.spawn(consume(broker.clone(), spec, shutdown.clone(), requests));
    // Results are recorded in lanes by task, in batches.
    let results = std::sync::Arc::new(results::Lanes::start(&consumers, &mut running));
    let spec =
        ConsumerSpec { queue: QueueName::SchedulerResults, prefetch: cli.prefetch, in_order: true, batch_acks: true };
    let handler = move |delivery| {
        let results = results.clone();
        async move { results.handle(delivery).await }
    };
    running.spawn(consume(broker.clone(), spec, shutdown.clone(), handler));
    // Dead letters are handled side by side.
    let spec =
        ConsumerSpec { queue: QueueName::SchedulerDead, prefetch: cli.prefetch, in_order: false, batch_acks: false };
    let dead = {
        let consumers = consumers.clone();
        move |delivery| {
            let consumers = consumers.clone();
            async move { consumers.on_dead_letter(delivery).await }
        }
    };
    running.spawn(consume(broker.clone(), spec, shutdown.clone(), dead));
    tracing::info!("scheduler running");

    wait_for_signal().await;
    tracing::info!("shutting down: finishing the messages in hand");
    shutdown.cancel();
    while running.join_next().await.is_some() {}
    pool.close().await;
    Ok(())
}

/// Finished tasks are kept a week, then forgotten; checked hourly.
async fn forget_finished_tasks(pool: sqlx::PgPool, shutdown: CancellationToken) {
    const KEEP: Duration = Duration::from_secs(7 * 86_400);
    loop {
        match tasks::forget_finished(&pool, KEEP).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "forgot tasks finished over a week ago"),
            Err(e) => tracing::warn!(error = %e, "could not forget old tasks; trying again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Fails steps whose answer is overdue, checking a few times per deadline (at most
/// every 5 s).
async fn expire_overdue_steps(tasks: Tasks, deadline_secs: u64, shutdown: CancellationToken) {
    let every =
        Duration::from_secs(deadline_secs).div_f64(4.0).clamp(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = tasks.expire_overdue().await {
            tracing::warn!(error = %e, "could not check for overdue steps; trying again");
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
