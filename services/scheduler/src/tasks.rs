//! The task state machine, kept in PostgreSQL.
//!
//! Every change happens in one transaction that also writes the messages it causes to
//! the outbox, under a per-entity advisory lock, so:
//! - a task starts only when no other task of its entity runs (the rest wait in order);
//! - a step result counts only for the step and attempt that is current, so duplicates
//!   and late results from an earlier attempt change nothing;
//! - a task ends exactly once: the `UPDATE … WHERE status IN ('waiting', 'running')`
//!   that finishes it matches once.
//!
//! The messages a change causes are gathered in a [`Change`] and written to the outbox
//! in one statement just before its commit, so a change costs a few round trips, not one
//! per message; after the commit they go to the relay from memory.

use std::time::Duration;

use aegir_contract::{
    Lane, LogLevel, StepAction, StepDispatched, StepOutcome, StepResult, TaskFinished, TaskLog, TaskOutcome,
    TaskRequested, TaskStarted,
};
use aegir_postgres::{Outbox, OutboxError, Staged};
use chrono::Utc;
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::change::{Change, scheduler_line};
use crate::plan;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("the stored request of task {task_id} cannot be read: {reason}")]
    Corrupt { task_id: Uuid, reason: String },
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries of one step in all, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits four times longer.
    pub first_delay: Duration,
}

impl RetryPolicy {
    fn delay(&self, retry: u32) -> Duration {
        self.first_delay.saturating_mul(4u32.saturating_pow(retry.saturating_sub(1)))
    }
}

#[derive(Clone)]
pub struct Tasks {
    pool: PgPool,
    outbox: Outbox,
    retry: RetryPolicy,
    /// How long a dispatched step may go without an answer before it fails.
    step_deadline: Duration,
}

/// A task row read with its id, for a batch.
#[derive(sqlx::FromRow)]
struct LockedRow {
    task_id: Uuid,
    #[sqlx(flatten)]
    task: TaskRow,
}

/// The part of a task row the state machine works with.
#[derive(sqlx::FromRow)]
struct TaskRow {
    context: String,
    kind: String,
    status: String,
    current_step: i32,
    attempt: i32,
    steps: i32,
    request: Option<serde_json::Value>,
    phase: String,
    failed_step: Option<i32>,
    failure: Option<String>,
    rollback_errors: Vec<String>,
}

impl Tasks {
    pub fn new(pool: PgPool, outbox: Outbox, retry: RetryPolicy, step_deadline: Duration) -> Self {
        Self { pool, outbox, retry, step_deadline }
    }

    fn timing(&self, delay: Option<Duration>) -> Timing {
        Timing { delay, deadline: self.step_deadline }
    }

    /// Fails the current step of every running task whose step got no answer by its
    /// deadline, as if its worker had reported a permanent failure: the task rolls back
    /// or ends, and its entity's next task starts. A late answer is then stale and
    /// changes nothing. Returns how many steps were failed.
    pub async fn expire_overdue(&self) -> Result<usize, TaskError> {
        let overdue: Vec<(Uuid, i32, i32)> = sqlx::query_as(
            "SELECT task_id, current_step, attempt FROM tasks
             WHERE status = 'running' AND step_deadline < now() ORDER BY step_deadline LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut failed = 0;
        for (task_id, step, attempt) in overdue {
            let mut tx = self.pool.begin().await?;
            let Some(task) = lock_task(&mut tx, task_id).await? else { continue };
            let still_overdue: bool = sqlx::query_scalar("SELECT step_deadline < now() FROM tasks WHERE task_id = $1")
                .bind(task_id)
                .fetch_one(&mut *tx)
                .await?;
            if task.status != "running" || task.current_step != step || task.attempt != attempt || !still_overdue {
                continue;
            }
            let request = stored_request(task_id, &task)?;
            let plan = plan::steps(&request);
            let step = step as usize;
            let action = if task.phase == "rollback" {
                let undo = task.failed_step.map(|f| plan::rollback(&plan, f as usize)).unwrap_or_default();
                undo.get(step - plan.len()).cloned()
            } else {
                plan.get(step).map(|s| s.action.clone())
            };
            let Some(action) = action else { continue };
            drop(tx);
            let result = StepResult {
                task_id,
                step: step as u32,
                attempt: attempt as u32,
                route: action.route(),
                worker: "scheduler".into(),
                outcome: StepOutcome::Failed {
                    reason: format!(
                        "no answer within {} s; the worker of {} may be stuck or down (the step may still finish \
                         there, but it no longer counts)",
                        self.step_deadline.as_secs(),
                        action.route()
                    ),
                    transient: false,
                },
                finished_at: Utc::now(),
                log: vec![],
            };
            tracing::warn!(%task_id, step, route = %action.route(), "step overdue; failing it");
            self.record(&result).await?;
            failed += 1;
        }
        Ok(failed)
    }

    /// Takes in a requested task; it starts now or waits behind its entity's other tasks.
    /// A request seen before (a redelivery) changes nothing.
    pub async fn accept(&self, request: &TaskRequested) -> Result<(), TaskError> {
        if self.accept_running(request).await? {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        lock_entity(&mut tx, &request.target.context().to_string()).await?;
        let mut out = Change::new();
        if !self.accept_in(&mut tx, &mut out, request).await? {
            return Ok(());
        }
        self.commit(tx, out).await
    }

    /// Takes in a task that nothing stands before on its entity (the common case) with
    /// one round trip rather than five: the database function `accept_running` locks the
    /// entity, puts the task in running its first step, and writes the messages of its
    /// start, all in the statement's own transaction. False when it changed nothing (the
    /// task has no step, was taken in before, or waits behind another): the general way
    /// decides then.
    async fn accept_running(&self, request: &TaskRequested) -> Result<bool, TaskError> {
        let plan = plan::steps(request);
        let mut out = Change::new();
        if !stage_first_step(&mut out, request.task_id, request, &plan) {
            return Ok(false);
        }
        let staged = out.into_staged();
        let columns = self.outbox.columns(&staged);
        let ids: Option<Vec<i64>> =
            sqlx::query_scalar("SELECT accept_running($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                .bind(request.task_id)
                .bind(request.target.context().to_string())
                .bind(request.kind.as_str())
                .bind(sqlx::types::Json(request))
                .bind(plan.len() as i32)
                .bind(request.requested_at)
                .bind(self.step_deadline.as_secs_f64())
                .bind(columns.exchanges)
                .bind(columns.keys)
                .bind(columns.bodies)
                .bind(columns.traceparents)
                .bind(columns.delays_ms)
                .fetch_one(&self.pool)
                .await?;
        let Some(ids) = ids else { return Ok(false) };
        self.outbox.hand_off(self.outbox.written(ids, staged));
        Ok(true)
    }

    /// Takes in several requested tasks in one transaction: one commit for all of them
    /// rather than one each. Requests of one entity are taken in their order; each in its
    /// own span, so what it sends stays in its task's trace.
    ///
    /// Their entities are locked first, in the order every batch shares (see
    /// [`Tasks::record_batch`]).
    pub async fn accept_batch(&self, requests: &[(&TaskRequested, tracing::Span)]) -> Result<(), TaskError> {
        let contexts: Vec<String> = requests.iter().map(|(request, _)| request.target.context().to_string()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(entity) FROM (
                 SELECT DISTINCT hashtextextended(context, 0) AS entity FROM unnest($1::text[]) AS context
                 ORDER BY entity
             ) AS entities",
        )
        .bind(&contexts)
        .execute(&mut *tx)
        .await?;
        let mut staged = Staged::new();
        for (request, span) in requests {
            let mut out = Change::new();
            self.accept_in(&mut tx, &mut out, request).instrument(span.clone()).await?;
            span.in_scope(|| staged.append(out.into_staged()));
        }
        self.commit_staged(tx, staged).await
    }

    /// Takes in a requested task in `tx`, its entity locked. False when it was taken in
    /// before (a redelivery): then nothing changed.
    async fn accept_in(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        request: &TaskRequested,
    ) -> Result<bool, TaskError> {
        let context = request.target.context().to_string();
        let plan = plan::steps(request);
        let stored = sqlx::types::Json(request);
        // The task goes in, and what stands before it on its entity comes back with it:
        // the running task, else the oldest waiting one (the statement does not see the
        // row it inserts). With nothing before it and a step to send, it goes in running
        // that step: the common case costs no second statement.
        let (status, ahead, ahead_status): (Option<String>, Option<Uuid>, Option<String>) = sqlx::query_as(
            "WITH ahead AS (
                 SELECT task_id, status FROM tasks WHERE context = $2 AND status IN ('waiting', 'running')
                 ORDER BY status = 'running' DESC, requested_at, seq LIMIT 1
             ), inserted AS (
                 INSERT INTO tasks (task_id, context, kind, request, steps, status, requested_at, started_at,
                                    step_deadline)
                 SELECT $1, $2, $3, $4, $5, s.status, $6,
                        CASE WHEN s.status = 'running' THEN now() END,
                        CASE WHEN s.status = 'running' THEN now() + make_interval(secs => $8) END
                 FROM (SELECT CASE WHEN $7 AND NOT EXISTS (SELECT 1 FROM ahead) THEN 'running' ELSE 'waiting' END
                       AS status) s
                 ON CONFLICT (task_id) DO NOTHING RETURNING status
             )
             SELECT (SELECT status FROM inserted), (SELECT task_id FROM ahead), (SELECT status FROM ahead)",
        )
        .bind(request.task_id)
        .bind(&context)
        .bind(request.kind.as_str())
        .bind(stored)
        .bind(plan.len() as i32)
        .bind(request.requested_at)
        .bind(!plan.is_empty())
        .bind(self.step_deadline.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        let Some(status) = status else {
            tracing::info!(task_id = %request.task_id, "task already accepted; ignoring the repeat");
            return Ok(false);
        };
        if status == "running" && stage_first_step(out, request.task_id, request, &plan) {
            return Ok(true);
        }
        // Nothing before it: it starts now, as it was asked (one that has no step ends at
        // once, and so the scheduler looks for the next one as after any end). Behind a
        // running task it waits; behind only waiting ones, the oldest of them starts.
        let running = match (ahead, ahead_status.as_deref()) {
            (Some(running), Some("running")) => Some(running),
            (None, _) if self.start(&mut *tx, out, request.task_id, request).await? => None,
            _ => self.start_next(&mut *tx, out, &context).await?,
        };
        if let Some(running) = running {
            let message = format!("queued: waiting for task {running} on {context} to finish");
            out.log(request.task_id, None, LogLevel::Info, message);
        }
        Ok(true)
    }

    /// Writes the messages of a change, commits, and hands them to the relay.
    async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Postgres>, out: Change) -> Result<(), TaskError> {
        self.commit_staged(tx, out.into_staged()).await
    }

    /// Writes staged messages, commits, and hands them to the relay.
    async fn commit_staged(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        staged: Staged,
    ) -> Result<(), TaskError> {
        let written = self.outbox.write(&mut tx, staged).await?;
        tx.commit().await?;
        self.outbox.hand_off(written);
        Ok(())
    }

    /// Cancels a task that has not started: it ends `cancelled` and never runs. A task
    /// that started or ended already is left alone; its log says the cancel came late.
    pub async fn cancel(&self, task_id: Uuid) -> Result<(), TaskError> {
        let mut tx = self.pool.begin().await?;
        let Some(task) = lock_task(&mut tx, task_id).await? else {
            tracing::warn!(%task_id, "cancel of a task this scheduler never accepted; ignoring it");
            return Ok(());
        };
        let mut out = Change::new();
        if task.status == "waiting" {
            let request = stored_request(task_id, &task)?;
            let reason = Some("cancelled before it started".into());
            self.finish(&mut tx, &mut out, &request, TaskOutcome::Cancelled, reason).await?;
        } else {
            let when = if task.status == "running" { "had started" } else { "had ended" };
            let message = format!("cancel refused: the task {when}; a task can be cancelled only while it waits");
            out.log(task_id, None, LogLevel::Warning, message);
        }
        self.commit(tx, out).await
    }

    /// Advances a task by the result of one of its steps.
    pub async fn record(&self, result: &StepResult) -> Result<(), TaskError> {
        let mut tx = self.pool.begin().await?;
        let Some(task) = lock_task(&mut tx, result.task_id).await? else {
            tracing::warn!(task_id = %result.task_id, "result for a task this scheduler never accepted; ignoring it");
            return Ok(());
        };
        let mut out = Change::new();
        self.apply_result(&mut tx, &mut out, result, task).await?;
        self.commit(tx, out).await
    }

    /// Advances several tasks by results of their steps, in one transaction: one commit
    /// for all of them rather than one each. Each result is applied in its own span, so
    /// what it sends stays in its task's trace. `results` name different tasks.
    ///
    /// The entities of all the tasks are locked first, in one order every batch shares,
    /// so two batches never wait for each other in a circle; everything else locks one
    /// entity per transaction.
    pub async fn record_batch(&self, results: &[(&StepResult, tracing::Span)]) -> Result<(), TaskError> {
        let ids: Vec<Uuid> = results.iter().map(|(result, _)| result.task_id).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(entity) FROM (
                 SELECT DISTINCT hashtextextended(context, 0) AS entity FROM tasks WHERE task_id = ANY($1)
                 ORDER BY entity
             ) AS entities",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<(Uuid, TaskRow)> = sqlx::query_as::<_, LockedRow>(
            "SELECT task_id, context, kind, status, current_step, attempt, steps, request, phase, failed_step,
                    failure, rollback_errors
             FROM tasks WHERE task_id = ANY($1) FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.task_id, row.task))
        .collect();
        let mut rows: std::collections::HashMap<Uuid, TaskRow> = rows.into_iter().collect();
        let mut staged = Staged::new();
        for (result, span) in results {
            let Some(task) = rows.remove(&result.task_id) else {
                let _entered = span.enter();
                tracing::warn!(task_id = %result.task_id, "result for a task this scheduler never accepted; ignoring it");
                continue;
            };
            let mut out = Change::new();
            self.apply_result(&mut tx, &mut out, result, task).instrument(span.clone()).await?;
            span.in_scope(|| staged.append(out.into_staged()));
        }
        self.commit_staged(tx, staged).await
    }

    /// Applies a step result to its task, locked and read as `task`, in `tx`.
    async fn apply_result(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        result: &StepResult,
        task: TaskRow,
    ) -> Result<(), TaskError> {
        // Only the scheduler received this result: its lines go on first, ahead of what
        // follows from it, and even when it is stale (a late attempt's lines still tell
        // what happened). A repeated result's lines are stored once, by their ids.
        if !result.read_by_task_api() {
            out.pass_on(&result.log);
        }
        let current = task.status == "running"
            && task.current_step == result.step as i32
            && task.attempt == result.attempt as i32;
        if !current {
            tracing::info!(
                task_id = %result.task_id, step = result.step, attempt = result.attempt, status = task.status,
                "stale or repeated step result; ignoring it"
            );
            return Ok(());
        }
        let request = stored_request(result.task_id, &task)?;
        let plan = plan::steps(&request);
        let step = result.step as usize;
        let undo = task.failed_step.map(|failed| plan::rollback(&plan, failed as usize)).unwrap_or_default();
        let action =
            if task.phase == "rollback" { undo.get(step - plan.len()) } else { plan.get(step).map(|s| &s.action) };
        if action.map(StepAction::route).as_ref() != Some(&result.route) {
            // Only the step's own server may answer for it.
            tracing::warn!(
                task_id = %result.task_id, step = result.step, route = %result.route,
                "result from a server the step was not sent to; ignoring it"
            );
            return Ok(());
        }
        let label = action.map_or("step", StepAction::label);
        match &result.outcome {
            StepOutcome::Failed { reason, transient: true } if result.attempt + 1 < self.retry.max_attempts => {
                let attempt = result.attempt + 1;
                let delay = self.retry.delay(attempt);
                let message = format!(
                    "{label} failed: {reason}; this may be temporary, trying again in {} s (try {} of {})",
                    delay.as_secs_f32(),
                    attempt + 1,
                    self.retry.max_attempts
                );
                out.log(result.task_id, Some(result.step), LogLevel::Warning, message);
                let action = action.cloned().expect("a current step has an action");
                dispatch(
                    (&mut *tx, &mut *out),
                    (result.task_id, request.lane),
                    action,
                    step,
                    plan.len(),
                    attempt,
                    self.timing(Some(delay)),
                )
                .await?;
            }
            outcome if task.phase == "rollback" => {
                let mut errors = task.rollback_errors.clone();
                if let StepOutcome::Failed { reason, .. } = outcome {
                    errors.push(format!("{label} on {} failed: {reason}", result.route));
                }
                let next = step - plan.len() + 1;
                if let Some(action) = undo.get(next).cloned() {
                    sqlx::query("UPDATE tasks SET rollback_errors = $2 WHERE task_id = $1")
                        .bind(result.task_id)
                        .bind(&errors)
                        .execute(&mut *tx)
                        .await?;
                    dispatch(
                        (&mut *tx, &mut *out),
                        (result.task_id, request.lane),
                        action,
                        plan.len() + next,
                        plan.len(),
                        0,
                        self.timing(None),
                    )
                    .await?;
                } else {
                    let failure = task.failure.clone().unwrap_or_else(|| "a step failed".into());
                    let reason = if errors.is_empty() {
                        format!("{failure}; everything it had done was undone")
                    } else {
                        format!("{failure}; the rollback was incomplete: {}", errors.join("; "))
                    };
                    let end = (TaskOutcome::Failed, Some(reason));
                    self.end_then_start_next(&mut *tx, &mut *out, &request, end, &task.context).await?;
                }
            }
            StepOutcome::Success { .. } if step + 1 >= plan.len() => {
                let end = (TaskOutcome::Success, None);
                self.end_then_start_next(&mut *tx, &mut *out, &request, end, &task.context).await?;
            }
            StepOutcome::Success { .. } => {
                let next = plan[step + 1].action.clone();
                let task_ref = (result.task_id, request.lane);
                dispatch((&mut *tx, &mut *out), task_ref, next, step + 1, plan.len(), 0, self.timing(None)).await?;
            }
            StepOutcome::Failed { reason, transient } => {
                let tries = if *transient { format!(" (after {} tries)", result.attempt + 1) } else { String::new() };
                let reason = format!("{label} on {} failed{tries}: {reason}", result.route);
                self.step_failed(&mut *tx, &mut *out, &task, &request, &plan, step, reason).await?;
            }
        }
        Ok(())
    }

    /// Fails a task because one of its messages was dead-lettered. `step` names the step
    /// and attempt the message was for, when it was a step: a dead step of an attempt
    /// that is no longer current changes nothing.
    pub async fn fail(&self, task_id: Uuid, step: Option<(u32, u32)>, reason: String) -> Result<(), TaskError> {
        let mut tx = self.pool.begin().await?;
        let Some(task) = lock_task(&mut tx, task_id).await? else {
            // Its request never got in (it was the message refused): record the task
            // as failed so it still ends, once.
            let inserted = sqlx::query(
                "INSERT INTO tasks (task_id, context, kind, steps, status, reason, requested_at, finished_at)
                 VALUES ($1, '', '', 0, 'failed', $2, now(), now()) ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(task_id)
            .bind(&reason)
            .execute(&mut *tx)
            .await?;
            let mut out = Change::new();
            if inserted.rows_affected() == 1 {
                out.log(task_id, None, LogLevel::Error, format!("task failed: {reason}"));
                let finished = TaskFinished {
                    task_id,
                    context: None,
                    kind: None,
                    outcome: TaskOutcome::Failed,
                    reason: Some(reason),
                    at: Utc::now(),
                    log: vec![],
                };
                out.finished(finished);
            }
            return self.commit(tx, out).await;
        };
        let unfinished = matches!(task.status.as_str(), "waiting" | "running");
        let stale = step.is_some_and(|(s, a)| {
            task.status != "running" || task.current_step != s as i32 || task.attempt != a as i32
        });
        if !unfinished || stale {
            tracing::info!(%task_id, status = task.status, "dead letter of a finished task or an old attempt; ignoring it");
            return Ok(());
        }
        let request = stored_request(task_id, &task)?;
        let mut out = Change::new();
        if task.status == "running" && task.phase == "forward" {
            let plan = plan::steps(&request);
            let step = task.current_step as usize;
            self.step_failed(&mut tx, &mut out, &task, &request, &plan, step, reason).await?;
        } else {
            // Waiting, or already undoing: end it here.
            let reason = match &task.failure {
                Some(failure) => format!("{failure}; the rollback was interrupted: {reason}"),
                None => reason,
            };
            let end = (TaskOutcome::Failed, Some(reason));
            self.end_then_start_next(&mut tx, &mut out, &request, end, &task.context).await?;
        }
        self.commit(tx, out).await
    }

    /// Step `step` failed for good: undo what the task did, or end it when there is
    /// nothing to undo.
    #[allow(clippy::too_many_arguments)]
    async fn step_failed(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        task: &TaskRow,
        request: &TaskRequested,
        plan: &[plan::PlannedStep],
        step: usize,
        reason: String,
    ) -> Result<(), TaskError> {
        let undo = plan::rollback(plan, step);
        let Some(first) = undo.first().cloned() else {
            let end = (TaskOutcome::Failed, Some(reason));
            return self.end_then_start_next(tx, out, request, end, &task.context).await;
        };
        sqlx::query("UPDATE tasks SET phase = 'rollback', failed_step = $2, failure = $3 WHERE task_id = $1")
            .bind(request.task_id)
            .bind(step as i32)
            .bind(&reason)
            .execute(&mut *tx)
            .await?;
        let labels: Vec<&str> = undo.iter().map(StepAction::label).collect();
        let message = format!("{reason}; rolling back: {}", labels.join(", then "));
        out.log(request.task_id, None, LogLevel::Error, message);
        let task_ref = (request.task_id, request.lane);
        dispatch((tx, out), task_ref, first, plan.len(), plan.len(), 0, self.timing(None)).await
    }

    /// Starts the oldest waiting task of `context` unless one of its tasks runs; returns
    /// the running one then.
    async fn start_next(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        context: &str,
    ) -> Result<Option<Uuid>, TaskError> {
        loop {
            // A running task comes first: then nothing starts. Otherwise the oldest waiting one.
            let next: Option<(Uuid, String, Option<serde_json::Value>)> = sqlx::query_as(
                "SELECT task_id, status, request FROM tasks
                 WHERE context = $1 AND status IN ('waiting', 'running')
                 ORDER BY status = 'running' DESC, requested_at, seq LIMIT 1",
            )
            .bind(context)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((task_id, status, request)) = next else { return Ok(None) };
            if status == "running" {
                return Ok(Some(task_id));
            }
            let request = waiting_request(task_id, request)?;
            if self.start(&mut *tx, out, task_id, &request).await? {
                return Ok(None);
            }
        }
    }

    /// Starts a waiting task: its start and first step go out. Returns false when it has
    /// no step to run on a server and so ended at once.
    async fn start(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        task_id: Uuid,
        request: &TaskRequested,
    ) -> Result<bool, TaskError> {
        let plan = plan::steps(request);
        stage_start(out, task_id, request, plan.len());
        let Some(first) = plan.first() else {
            sqlx::query("UPDATE tasks SET status = 'running', started_at = now() WHERE task_id = $1")
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
            out.log(task_id, None, LogLevel::Info, "no step runs on a server for this task");
            self.finish(&mut *tx, out, request, TaskOutcome::Success, None).await?;
            return Ok(false);
        };
        // The dispatch marks the task running, with its start time.
        let task_ref = (task_id, request.lane);
        dispatch((tx, out), task_ref, first.action.clone(), 0, plan.len(), 0, self.timing(None)).await?;
        Ok(true)
    }

    /// Ends a task. Does nothing when it has ended already.
    async fn finish(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        request: &TaskRequested,
        outcome: TaskOutcome,
        reason: Option<String>,
    ) -> Result<(), TaskError> {
        let ended = sqlx::query(
            "UPDATE tasks SET status = $2, reason = $3, finished_at = now(), request = NULL
             WHERE task_id = $1 AND status IN ('waiting', 'running')",
        )
        .bind(request.task_id)
        .bind(outcome.as_str())
        .bind(&reason)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() == 1 {
            stage_finish(out, request, outcome, reason);
        }
        Ok(())
    }

    /// Ends a running task (when it has not ended already) and starts the next waiting
    /// task of its entity, `context`. The end and the look for what comes next are one
    /// statement: a task's end is the most common change there is.
    async fn end_then_start_next(
        &self,
        tx: &mut PgConnection,
        out: &mut Change,
        request: &TaskRequested,
        (outcome, reason): (TaskOutcome, Option<String>),
        context: &str,
    ) -> Result<(), TaskError> {
        // The statement's snapshot still shows the ending task unfinished: it is left
        // out of what comes next by its id.
        // A waiting task with a step to run is put in running its first step by the same
        // statement (as `dispatch` would): only its messages are left to stage.
        let (ended, next_id, next_status, next_request, next_started): (
            bool,
            Option<Uuid>,
            Option<String>,
            Option<serde_json::Value>,
            bool,
        ) = sqlx::query_as(
            "WITH ended AS (
                     UPDATE tasks SET status = $2, reason = $3, finished_at = now(), request = NULL
                     WHERE task_id = $1 AND status IN ('waiting', 'running') RETURNING task_id
                 ), next AS (
                     SELECT task_id, status, request, steps FROM tasks
                     WHERE context = $4 AND status IN ('waiting', 'running') AND task_id <> $1
                     ORDER BY status = 'running' DESC, requested_at, seq LIMIT 1
                 ), started AS (
                     UPDATE tasks SET status = 'running', started_at = coalesce(tasks.started_at, now()),
                            current_step = 0, attempt = 0, step_deadline = now() + make_interval(secs => $5)
                     FROM next
                     WHERE tasks.task_id = next.task_id AND next.status = 'waiting' AND next.steps > 0
                     RETURNING tasks.task_id
                 )
                 SELECT EXISTS (SELECT 1 FROM ended), next.task_id, next.status, next.request,
                        EXISTS (SELECT 1 FROM started)
                 FROM (SELECT 1) AS one LEFT JOIN next ON true",
        )
        .bind(request.task_id)
        .bind(outcome.as_str())
        .bind(&reason)
        .bind(context)
        .bind(self.step_deadline.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        if ended {
            stage_finish(out, request, outcome, reason);
        }
        let (Some(task_id), Some("waiting")) = (next_id, next_status.as_deref()) else { return Ok(()) };
        let next = waiting_request(task_id, next_request)?;
        if next_started {
            if !stage_first_step(out, task_id, &next, &plan::steps(&next)) {
                let reason = "its plan changed since it was accepted".into();
                return Err(TaskError::Corrupt { task_id, reason });
            }
            return Ok(());
        }
        if !self.start(&mut *tx, out, task_id, &next).await? {
            // It had no step and ended at once: the one after it, then.
            self.start_next(tx, out, context).await?;
        }
        Ok(())
    }
}

/// The messages of a task's end: its last line and the event.
fn stage_finish(out: &mut Change, request: &TaskRequested, outcome: TaskOutcome, reason: Option<String>) {
    match (outcome, &reason) {
        (TaskOutcome::Cancelled, _) => {
            out.log(request.task_id, None, LogLevel::Warning, "task cancelled before it started")
        }
        (_, Some(reason)) => out.log(request.task_id, None, LogLevel::Error, format!("task failed: {reason}")),
        (_, None) => out.log(request.task_id, None, LogLevel::Success, "task succeeded"),
    }
    let finished = TaskFinished {
        task_id: request.task_id,
        context: Some(request.target.context()),
        kind: Some(request.kind),
        outcome,
        reason,
        at: Utc::now(),
        log: vec![],
    };
    out.finished(finished);
}

/// The stored request of a waiting task.
fn waiting_request(task_id: Uuid, request: Option<serde_json::Value>) -> Result<TaskRequested, TaskError> {
    let corrupt = |reason: String| TaskError::Corrupt { task_id, reason };
    let request = request.ok_or_else(|| corrupt("no request stored (waiting task)".into()))?;
    serde_json::from_value(request).map_err(|e| corrupt(e.to_string()))
}

/// Serialises every change to one entity's tasks across all scheduler processes.
async fn lock_entity(tx: &mut PgConnection, context: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(context).execute(tx).await?;
    Ok(())
}

/// Locks a task and its entity (entity first, as everywhere, so no deadlock), and reads it.
async fn lock_task(tx: &mut PgConnection, task_id: Uuid) -> Result<Option<TaskRow>, sqlx::Error> {
    // One round trip for both locks: a task's context never changes, so the row found
    // names its entity, whose lock is taken (the subquery is volatile, so it runs for
    // the row before the row is locked). A change committed while this waited for the
    // entity is what `FOR UPDATE` returns: it reads the newest version of a row it locks.
    sqlx::query_as(
        "SELECT t.context, t.kind, t.status, t.current_step, t.attempt, t.steps, t.request, t.phase,
                t.failed_step, t.failure, t.rollback_errors
         FROM tasks t, LATERAL (SELECT pg_advisory_xact_lock(hashtextextended(t.context, 0))) AS entity
         WHERE t.task_id = $1 FOR UPDATE OF t",
    )
    .bind(task_id)
    .fetch_optional(tx)
    .await
}

fn stored_request(task_id: Uuid, task: &TaskRow) -> Result<TaskRequested, TaskError> {
    let corrupt = |reason: String| TaskError::Corrupt { task_id, reason };
    let value = task.request.as_ref().ok_or_else(|| corrupt(format!("no request stored ({} task)", task.kind)))?;
    let request = TaskRequested::deserialize(value).map_err(|e| corrupt(e.to_string()))?;
    if plan::steps(&request).len() as i32 != task.steps {
        return Err(corrupt("its plan changed since it was accepted".into()));
    }
    Ok(request)
}

/// When a dispatched step is sent (after `delay`, for a retry) and how long its worker
/// then has to answer.
#[derive(Debug, Clone, Copy)]
struct Timing {
    delay: Option<Duration>,
    deadline: Duration,
}

/// Sends step `step` (numbered from 0; undo steps follow the plan's `planned` steps):
/// makes it the task's current step and attempt, with the deadline of its answer, and
/// marks the task running (since now, when it had not started). The row written, the
/// rest is [`stage_dispatch`].
async fn dispatch(
    (tx, out): (&mut PgConnection, &mut Change),
    (task_id, lane): (Uuid, Lane),
    action: StepAction,
    step: usize,
    planned: usize,
    attempt: u32,
    timing: Timing,
) -> Result<(), TaskError> {
    let Timing { delay, deadline } = timing;
    sqlx::query(
        "UPDATE tasks SET status = 'running', started_at = coalesce(started_at, now()), current_step = $2,
                attempt = $3, step_deadline = now() + make_interval(secs => $4)
         WHERE task_id = $1",
    )
    .bind(task_id)
    .bind(step as i32)
    .bind(attempt as i32)
    .bind((deadline + delay.unwrap_or_default()).as_secs_f64())
    .execute(&mut *tx)
    .await?;
    stage_dispatch(out, (task_id, lane), action, (step, planned, attempt), delay);
    Ok(())
}

/// The messages of a dispatch whose row is written: the step (after `delay`), and its
/// line in the task's log. `at` is (step, planned steps, attempt) as for [`dispatch`].
fn stage_dispatch(
    out: &mut Change,
    (task_id, lane): (Uuid, Lane),
    action: StepAction,
    (step, planned, attempt): (usize, usize, u32),
    delay: Option<Duration>,
) {
    let route = action.route();
    let message = if step < planned {
        format!("step {} of {planned}: {} on {route}", step + 1, action.label())
    } else {
        format!("undo step {}: {} on {route}", step - planned + 1, action.label())
    };
    out.log(task_id, Some(step as u32), LogLevel::Info, message);
    let dispatched =
        StepDispatched { task_id, step: step as u32, attempt, route, lane, action, dispatched_at: Utc::now() };
    out.dispatch(dispatched, delay);
}

/// The messages of a task whose row was put in running its first step of `plan`: its
/// start, and that step. False (nothing staged) when the plan has no step.
fn stage_first_step(out: &mut Change, task_id: Uuid, request: &TaskRequested, plan: &[plan::PlannedStep]) -> bool {
    let Some(first) = plan.first() else { return false };
    stage_start(out, task_id, request, plan.len());
    stage_dispatch(out, (task_id, request.lane), first.action.clone(), (0, plan.len(), 0), None);
    true
}

/// The messages of a task's start: the event, and its first lines.
fn stage_start(out: &mut Change, task_id: Uuid, request: &TaskRequested, steps: usize) {
    let started = TaskStarted {
        task_id,
        context: request.target.context(),
        kind: request.kind,
        steps: steps as u32,
        at: Utc::now(),
        log: vec![],
    };
    let lane = match request.lane {
        Lane::Interactive => "",
        Lane::Bulk => " (bulk lane: people's steps go first)",
    };
    let message = format!("{} {} started: {steps} step(s){lane}", request.kind, started.context);
    out.started(started);
    out.log(task_id, None, LogLevel::Info, message);
    if let Some(notice) = plan::notice(request) {
        out.log(task_id, None, LogLevel::Warning, notice);
    }
}

/// Writes a line of the scheduler's to a task's log, through the outbox.
pub(crate) async fn log(
    tx: &mut PgConnection,
    task_id: Uuid,
    step: Option<u32>,
    level: LogLevel,
    message: impl Into<String>,
) -> Result<(), OutboxError> {
    let lines = vec![scheduler_line(task_id, step, level, message)];
    Outbox::enqueue(tx, &TaskLog { task_id, lines }, None).await
}

/// Forgets tasks that finished more than `keep` ago. The scheduler's rows only guard
/// against a request or result delivered again, which happens within minutes, so a
/// short history is enough; task-api keeps the history people read.
pub async fn forget_finished(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM tasks WHERE status IN ('success', 'failed', 'cancelled')
         AND finished_at < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
