use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aegir_amqp::dead_letter::{carries_private_key, delivery_count, is_last_chance, without_private_keys};
use aegir_amqp::lapin_options::{BasicAckOptions, BasicNackOptions};
use aegir_amqp::signing::{Signer, SigningKey, load_key};
use aegir_amqp::topology::{DEAD_LETTER_EXCHANGE, QueueName};
use aegir_amqp::{Broker, ConsumerSpec, Delivery, consume, extract_trace_context};
use aegir_config::WorkerKeyArgs;
use aegir_contract::{
    Lane, Message, Route, ServerName, StepAction, StepDispatched, StepFacts, StepOutcome, StepResult, TaskRef,
};
use anyhow::Context;
use chrono::Utc;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::slots::Slots;
use crate::{StepError, StepHandler, StepLog, WorkerIdentity, health};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The server this worker works for; it consumes only `<server>.<service>`.
    #[arg(long, env = "AEGIR_SERVER", default_value = "server_master")]
    pub server: ServerName,

    /// Address of the `/healthz` endpoint.
    #[arg(long, env = "AEGIR_HEALTH_LISTEN", default_value = "127.0.0.1:0")]
    pub health_listen: SocketAddr,

    /// Steps run at once by this process: the limit of its server's service. People's
    /// steps take a free slot first; scheduled and batch steps use at most all but one.
    #[arg(long, env = "AEGIR_PREFETCH", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    #[command(flatten)]
    pub keys: WorkerKeyArgs,

    /// Declare this server's work queues. Turn off when the worker's broker user may not
    /// (deploy/rabbitmq-users.sh): the scheduler declares them when it first sends work.
    #[arg(long, env = "AEGIR_DECLARE_QUEUES", default_value_t = true, action = clap::ArgAction::Set)]
    pub declare_queues: bool,

    /// A step still running after this many seconds fails.
    #[arg(long, env = "AEGIR_STEP_TIMEOUT_SECS", default_value_t = 3600)]
    pub step_timeout_secs: u64,

    /// Fault injection for tests: wait this long before running each step, so a test
    /// can kill the worker while it holds one.
    #[arg(long, env = "AEGIR_STEP_DELAY_MS", default_value_t = 0, hide = true)]
    pub step_delay_ms: u64,
}

/// How long a step that timed out gets to stop before its slot is taken back anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs a step's work on its own task, so a panic in it fails the step and not the
/// worker, for at most `timeout`. Work still running then is stopped: its future is
/// dropped at its next await, which kills the programs it runs (they are spawned
/// `kill_on_drop`), so a stuck step neither holds its slot nor keeps changing the site
/// after its task has failed.
async fn run_bounded<F>(work: F, timeout: Duration) -> Result<StepFacts, StepError>
where
    F: Future<Output = Result<StepFacts, StepError>> + Send + 'static,
{
    let mut handle = tokio::spawn(work);
    match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(StepError::permanent(format!("the worker crashed while running the step: {join}"))),
        Err(_) => {
            handle.abort();
            // Work busy without an await cannot be stopped there; it is left to finish
            // on its own rather than hold the slot.
            let stopped = tokio::time::timeout(STOP_GRACE, handle).await.is_ok();
            if !stopped {
                tracing::warn!("a step that timed out did not stop within {} s", STOP_GRACE.as_secs());
            }
            Err(StepError::permanent(format!(
                "the step did not finish within {} s and was stopped",
                timeout.as_secs_f64()
            )))
        }
    }
}

fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    format!("{}:{}", host.trim(), std::process::id())
}

/// Runs a worker until SIGTERM or SIGINT.
pub async fn run<H: StepHandler>(
    amqp_url: &str,
    args: WorkerArgs,
    make_handler: impl FnOnce(WorkerIdentity) -> anyhow::Result<H>,
) -> anyhow::Result<()> {
    let identity = WorkerIdentity { server: args.server.clone(), service: H::SERVICE, instance: instance_name() };
    let handler = Arc::new(make_handler(identity.clone())?);
    let route = Route::new(args.server.clone(), H::SERVICE);
    let key = load_key(
        "server's signing key",
        "AEGIR_WORKER_KEY",
        args.keys.worker_key.as_deref(),
        args.keys.worker_key_file.as_deref(),
    )?;
    let signer = Signer::Server(key.clone());
    let name = format!("{route} worker {}", identity.instance);
    let broker = match args.declare_queues {
        true => Broker::signed(amqp_url, name, signer),
        false => Broker::signed_restricted(amqp_url, name, signer),
    };
    let shutdown = CancellationToken::new();

    let bound = health::serve(
        args.health_listen,
        broker.clone(),
        route.to_string(),
        identity.instance.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("cannot listen for health checks on {}", args.health_listen))?;
    tracing::info!(%route, health = %bound, "worker starting");

    broker.ready().await;
    // Without the right to declare, the consumers wait until the control plane has.
    if args.declare_queues {
        for lane in [Lane::Interactive, Lane::Bulk] {
            let queue = QueueName::work(route.clone(), lane);
            broker.declare(&queue).await.with_context(|| format!("cannot declare the work queue {}", queue.name()))?;
        }
    }

    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let slots = Slots::new(args.prefetch.into());
    let ctx = Arc::new(StepContext { broker: broker.clone(), route, identity, args, slots, key });
    let lane = |lane: Lane| {
        // The bulk lane holds at most all but one slot's worth, so a person's step finds a
        // free slot (or the next one) even while the bulk queue is long.
        let prefetch = match lane {
            Lane::Interactive => ctx.args.prefetch,
            Lane::Bulk => ctx.args.prefetch.saturating_sub(1).max(1),
        };
        let spec = ConsumerSpec {
            queue: QueueName::work(ctx.route.clone(), lane),
            prefetch,
            in_order: false,
            batch_acks: false,
        };
        let (ctx, handler) = (ctx.clone(), handler.clone());
        consume(broker.clone(), spec, shutdown.clone(), move |delivery| {
            let (ctx, handler) = (ctx.clone(), handler.clone());
            async move { ctx.handle(delivery, lane, handler).await }
        })
    };
    tokio::join!(lane(Lane::Interactive), lane(Lane::Bulk));
    Ok(())
}

async fn shutdown_on_signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing the steps in hand");
    token.cancel();
}

struct StepContext {
    broker: Broker,
    route: Route,
    identity: WorkerIdentity,
    args: WorkerArgs,
    slots: Arc<Slots>,
    /// This server's key: steps must be signed with it.
    key: SigningKey,
}

impl StepContext {
    async fn handle<H: StepHandler>(&self, delivery: Delivery, lane: Lane, handler: Arc<H>) {
        let _slot = self.slots.take(lane).await;
        let span = tracing::info_span!("step", route = %self.route, %lane, task_id = tracing::field::Empty, step = tracing::field::Empty);
        extract_trace_context(delivery.properties.headers().as_ref(), &span);
        async {
            if let Err(e) = self.key.verify_delivery(&delivery) {
                return self.refuse(&delivery, &e.to_string()).await;
            }
            let step = match StepDispatched::decode(&delivery.data) {
                Ok(step) if step.route == self.route => step,
                Ok(step) => {
                    let why = format!("step for `{}` was delivered to `{}`", step.route, self.route);
                    return self.refuse(&delivery, &why).await;
                }
                Err(e) => return self.refuse(&delivery, &e.to_string()).await,
            };
            tracing::Span::current().record("task_id", tracing::field::display(step.task_id));
            tracing::Span::current().record("step", step.step);
            let headers = delivery.properties.headers().as_ref();
            if carries_private_key(&delivery.data) && is_last_chance(headers) {
                // Failing once more would have the broker dead-letter it whole, key included.
                let why = format!(
                    "{} was handed out {} times without finishing (its worker stopped each time); it carries a \
                     private key, which is never kept in the dead letters, so it fails here instead; supply the \
                     certificate again",
                    step.action.label(),
                    delivery_count(headers) + 1
                );
                return self.refuse(&delivery, &why).await;
            }
            // Which worker ran which step, for the operator reading this server's log.
            tracing::info!(action = step.action.label(), attempt = step.attempt, "running step");
            let log = StepLog::new(self.broker.clone(), step.task_id, Some(step.step), self.route.to_string())
                .in_lane(step.lane);
            let outcome = self.run_step(&step, &delivery, handler, &log).await;
            let result = StepResult {
                task_id: step.task_id,
                step: step.step,
                attempt: step.attempt,
                route: self.route.clone(),
                worker: self.identity.instance.clone(),
                outcome,
                finished_at: Utc::now(),
                log: log.rest().await,
            };
            // The result goes out behind the step's log lines sent before it, or carries
            // them; their confirms are awaited together, and the step is acked only once
            // the result's came.
            let sent = self.broker.publish_unconfirmed(&result).await;
            log.flush().await;
            match self.broker.confirm(vec![sent]).await {
                Ok(()) => {
                    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                        // The result is out; the redelivered step will be recognised as a
                        // duplicate by the scheduler.
                        tracing::warn!(error = %e, "could not ack a finished step");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not publish a step result; the step will be redelivered");
                    let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run_step<H: StepHandler>(
        &self,
        step: &StepDispatched,
        delivery: &Delivery,
        handler: Arc<H>,
        log: &StepLog,
    ) -> StepOutcome {
        if delivery.redelivered {
            log.warning(format!("{} was interrupted before it finished; running it again", step.action.label())).await;
        }
        let trace = aegir_amqp::current_trace_id().map(|id| format!(" (trace {id})")).unwrap_or_default();
        log.info(format!("{} started on {}{trace}", step.action.label(), self.identity.instance)).await;
        if self.args.step_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.args.step_delay_ms)).await;
        }
        if let StepAction::Ping { .. } = step.action {
            log.success(format!("{} answers", self.route)).await;
            return StepOutcome::Success { facts: Default::default() };
        }
        let work = {
            let (step, log) = (step.clone(), log.clone());
            async move { handler.run(&step, &log).await }
        };
        match run_bounded(work, Duration::from_secs(self.args.step_timeout_secs)).await {
            Ok(facts) => {
                log.success(format!("{} succeeded", step.action.label())).await;
                StepOutcome::Success { facts }
            }
            Err(e) => {
                log.error(format!("{} failed: {}", step.action.label(), e.reason)).await;
                StepOutcome::Failed { reason: e.reason, transient: e.transient }
            }
        }
    }

    /// Refuses a message this worker must not act on. It is kept for operators in the
    /// dead letters, and its task learns why: a log line, and a failed result for the
    /// step it names, so the task fails with this reason (a result for a step that is
    /// not current changes nothing in the scheduler).
    async fn refuse(&self, delivery: &Delivery, why: &str) {
        tracing::warn!(reason = why, "refusing a message; dead-lettering it");
        let task = TaskRef::peek(&delivery.data);
        if let Some(task) = &task {
            let log = StepLog::new(self.broker.clone(), task.task_id, task.step, self.route.to_string());
            log.error(format!("refused a step message: {why}")).await;
            log.flush().await;
        }
        let Some((task, step, attempt)) = task.and_then(|t| Some((t.task_id, t.step?, t.attempt?))) else {
            if carries_private_key(&delivery.data) {
                return self.keep_without_key(delivery).await;
            }
            if let Err(e) = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await {
                tracing::warn!(error = %e, "could not dead-letter a refused message");
            }
            return;
        };
        let result = StepResult {
            task_id: task,
            step,
            attempt,
            route: self.route.clone(),
            worker: self.identity.instance.clone(),
            outcome: StepOutcome::Failed { reason: format!("refused its step message: {why}"), transient: false },
            finished_at: Utc::now(),
            log: vec![],
        };
        // The result first, then the copy for operators: had the broker dead-lettered it,
        // the scheduler might fail the task on the dead letter, without the reason,
        // before the result arrived.
        let reported = self.broker.publish(&result).await;
        let copy = without_private_keys(&delivery.data);
        let kept = self.broker.publish_bytes(DEAD_LETTER_EXCHANGE, delivery.routing_key.as_str(), &copy).await;
        match (reported, kept) {
            (Ok(()), Ok(())) => {
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(error = %e, "could not ack a refused message");
                }
            }
            (reported, kept) => {
                let error = reported.err().or(kept.err()).map(|e| e.to_string()).unwrap_or_default();
                if carries_private_key(&delivery.data) {
                    // The broker's own dead letter would keep the key: dropped instead.
                    tracing::error!(%error, "could not report a refused message carrying a private key; dropping it");
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                    return;
                }
                tracing::warn!(%error, "could not report a refused message; dead-lettering it");
                let _ = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
            }
        }
    }

    /// Keeps a refused message that carries a private key in the dead letters without
    /// the key, and takes it off its queue (the broker's dead letter would keep it whole).
    async fn keep_without_key(&self, delivery: &Delivery) {
        let copy = without_private_keys(&delivery.data);
        if let Err(e) = self.broker.publish_bytes(DEAD_LETTER_EXCHANGE, delivery.routing_key.as_str(), &copy).await {
            tracing::error!(error = %e, "could not keep a refused message carrying a private key; dropping it");
        }
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "could not ack a refused message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tells, when dropped, that the work holding it was stopped.
    struct Stopped(Option<tokio::sync::oneshot::Sender<()>>);

    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.take().map(|tx| tx.send(()));
        }
    }

    #[tokio::test]
    async fn a_step_past_its_timeout_fails_and_is_stopped() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work = async move {
            let _guard = Stopped(Some(tx));
            std::future::pending::<()>().await;
            Ok(StepFacts::default())
        };
        let result = run_bounded(work, Duration::from_millis(50)).await;
        let reason = result.unwrap_err().reason;
        assert!(reason.contains("did not finish within 0.05 s and was stopped"), "{reason}");
        // The work was dropped before the step's failure was reported.
        let stopped = tokio::time::timeout(Duration::from_millis(100), rx).await;
        assert!(matches!(stopped, Ok(Ok(()))), "the stuck work is still running");
    }

    #[tokio::test]
    async fn a_program_a_stuck_step_runs_is_killed_with_it() {
        let pid = Arc::new(std::sync::Mutex::new(None));
        let work = {
            let pid = pid.clone();
            async move {
                let mut child = tokio::process::Command::new("sleep").arg("600").kill_on_drop(true).spawn().unwrap();
                *pid.lock().unwrap() = child.id();
                let _ = child.wait().await;
                Ok(StepFacts::default())
            }
        };
        assert!(run_bounded(work, Duration::from_millis(300)).await.is_err());
        let pid = pid.lock().unwrap().expect("the program started");
        // Killed: gone, or dead and waiting to be reaped (state `Z`).
        let dead = async {
            loop {
                match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Err(_) => return,
                    Ok(stat) if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) => {
                        return;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), dead).await.expect("`sleep 600` still runs");
    }

    #[tokio::test]
    async fn a_step_that_panics_fails_and_the_worker_goes_on() {
        let work = async {
            if true {
                panic!("boom");
            }
            Ok(StepFacts::default())
        };
        let reason = run_bounded(work, Duration::from_secs(5)).await.unwrap_err().reason;
        assert!(reason.contains("the worker crashed while running the step"), "{reason}");
    }
}
