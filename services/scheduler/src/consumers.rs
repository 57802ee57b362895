//! The scheduler's three queues: task requests, step results, and dead letters.
//!
//! Each delivery is checked against the contract; an invalid one is dead-lettered (and
//! its task, when it names one, learns why in its log). A valid one changes the task
//! state in PostgreSQL and is acked only after that commit, retrying while the database
//! is away, so nothing is lost and a redelivery changes nothing.

use std::future::Future;
use std::time::Duration;

use aegir_amqp::dead_letter::{carries_private_key, without_private_keys};
use aegir_amqp::lapin_options::{BasicAckOptions, BasicNackOptions};
use aegir_amqp::lapin_types::{AMQPValue, FieldTable};
use aegir_amqp::signing::MasterKey;
use aegir_amqp::topology::{DEAD_LETTER_EXCHANGE, QueueName};
use aegir_amqp::{Broker, Delivery, extract_trace_context};
use aegir_contract::{LogLevel, Message, Route, StepResult, TaskCancelRequested, TaskLog, TaskRef, TaskRequested};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::change::scheduler_line;
use crate::tasks::{TaskError, Tasks};

/// A task request that passed [`Consumers::check`], with its delivery and span.
pub struct CheckedRequest {
    pub delivery: Delivery,
    pub request: TaskRequested,
    pub span: tracing::Span,
}

#[derive(Clone)]
pub struct Consumers {
    pub tasks: Tasks,
    pub broker: Broker,
    /// Checks the signatures of requests (control key) and of step results (the key of
    /// the server whose worker sent it).
    pub master: MasterKey,
    pub shutdown: CancellationToken,
}

impl Consumers {
    /// Checks a task request as it is read: the request it carries, in the span of its
    /// trace, when it is valid and signed with the control key; else it is refused
    /// (dead-lettered) and `None` comes back. Decoded once, here, it goes on to its lane.
    pub async fn check(&self, delivery: Delivery) -> Option<CheckedRequest> {
        let span = traced_span(&delivery, tracing::info_span!("task requested", task_id = tracing::field::Empty));
        let request = self.check_request(&delivery).instrument(span.clone()).await?;
        Some(CheckedRequest { delivery, request, span })
    }

    /// Checked task requests taken together, in their order (cancels go through
    /// [`Consumers::on_cancel`]): accepted in one transaction. Should that fail, each is
    /// accepted on its own, in order, so one that cannot be accepted holds up no other.
    pub async fn on_requests(&self, batch: Vec<CheckedRequest>) {
        if let [one] = batch.as_slice() {
            if self.retry(|| self.tasks.accept(&one.request)).instrument(one.span.clone()).await {
                ack(&one.delivery).await;
            }
            return;
        }
        if batch.is_empty() {
            return;
        }
        tracing::debug!(requests = batch.len(), "accepting task requests together");
        let requests: Vec<(&TaskRequested, tracing::Span)> =
            batch.iter().map(|c| (&c.request, c.span.clone())).collect();
        if let Err(e) = self.tasks.accept_batch(&requests).await {
            tracing::warn!(error = %e, requests = batch.len(), "cannot accept task requests together; accepting each on its own");
            for checked in &batch {
                if !self.retry(|| self.tasks.accept(&checked.request)).instrument(checked.span.clone()).await {
                    return;
                }
                ack(&checked.delivery).await;
            }
            return;
        }
        for checked in &batch {
            ack(&checked.delivery).await;
        }
    }

    /// The request a delivery carries, when it is valid and signed with the control key;
    /// else it is refused (dead-lettered) and `None` comes back.
    async fn check_request(&self, delivery: &Delivery) -> Option<TaskRequested> {
        if let Err(e) = self.master.control().verify_delivery(delivery) {
            let why = format!("refused a task request: {e}");
            self.refuse(delivery, "scheduler.tasks", &why).await;
            return None;
        }
        let request = match TaskRequested::decode(&delivery.data) {
            Ok(request) => request,
            Err(e) => {
                self.refuse(delivery, "scheduler.tasks", &e.to_string()).await;
                return None;
            }
        };
        tracing::Span::current().record("task_id", tracing::field::display(request.task_id));
        Some(request)
    }

    /// A cancel arrives behind the request it cancels (one queue, taken in order).
    pub async fn on_cancel(&self, delivery: Delivery) {
        let span = tracing::info_span!("task cancel", task_id = tracing::field::Empty);
        extract_trace_context(delivery.properties.headers().as_ref(), &span);
        async {
            if let Err(e) = self.master.control().verify_delivery(&delivery) {
                let why = format!("refused a cancel: {e}");
                return self.refuse(&delivery, "scheduler.tasks", &why).await;
            }
            let cancel = match TaskCancelRequested::decode(&delivery.data) {
                Ok(cancel) => cancel,
                Err(e) => return self.refuse(&delivery, "scheduler.tasks", &e.to_string()).await,
            };
            tracing::Span::current().record("task_id", tracing::field::display(cancel.task_id));
            if self.retry(|| self.tasks.cancel(cancel.task_id)).await {
                ack(&delivery).await;
            }
        }
        .instrument(span)
        .await
    }

    pub async fn on_result(&self, delivery: Delivery) {
        let span = result_span(&delivery);
        async {
            let Some(result) = self.check_result(&delivery).await else { return };
            if self.retry(|| self.tasks.record(&result)).await {
                ack(&delivery).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Step results taken together: the valid ones of different tasks are recorded in one
    /// transaction. Should that fail, each is recorded on its own (so one that cannot be
    /// recorded holds up no other), as is a second result of a task in the same batch.
    pub async fn on_results(&self, deliveries: Vec<Delivery>) {
        if deliveries.len() == 1 {
            return self.on_result(deliveries.into_iter().next().expect("one delivery")).await;
        }
        let mut batch = Vec::with_capacity(deliveries.len());
        let mut later = Vec::new();
        for delivery in deliveries {
            let span = result_span(&delivery);
            let Some(result) = self.check_result(&delivery).instrument(span.clone()).await else { continue };
            if batch.iter().any(|(_, r, _): &(Delivery, StepResult, tracing::Span)| r.task_id == result.task_id) {
                later.push(delivery);
            } else {
                batch.push((delivery, result, span));
            }
        }
        if batch.is_empty() {
            return;
        }
        tracing::debug!(results = batch.len(), "recording step results together");
        let results: Vec<(&StepResult, tracing::Span)> = batch.iter().map(|(_, r, s)| (r, s.clone())).collect();
        match self.tasks.record_batch(&results).await {
            Ok(()) => {
                for (delivery, _, _) in &batch {
                    ack(delivery).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, results = batch.len(), "cannot record step results together; recording each on its own");
                for (delivery, result, span) in &batch {
                    let recorded = self.retry(|| self.tasks.record(result)).instrument(span.clone()).await;
                    if !recorded {
                        return;
                    }
                    ack(delivery).await;
                }
            }
        }
        for delivery in later {
            self.on_result(delivery).await;
        }
    }

    /// The result a delivery carries, when it is valid and signed by the server it names;
    /// else it is refused (dead-lettered) and `None` comes back.
    async fn check_result(&self, delivery: &Delivery) -> Option<StepResult> {
        let result = match StepResult::decode(&delivery.data) {
            Ok(result) => result,
            Err(e) => {
                self.refuse(delivery, "scheduler.results", &e.to_string()).await;
                return None;
            }
        };
        // Only the workers of the server the result names hold the key it must carry.
        if let Err(e) = self.master.server(&result.route.server).verify_delivery(delivery) {
            let why = format!("refused a step result from {}: {e}", result.route);
            self.refuse(delivery, "scheduler.results", &why).await;
            return None;
        }
        tracing::Span::current().record("task_id", tracing::field::display(result.task_id));
        Some(result)
    }

    /// A message some queue gave up on. When it belongs to a task that is still
    /// waiting for it, that task fails with the reason.
    pub async fn on_dead_letter(&self, delivery: Delivery) {
        let death = Death::read(delivery.properties.headers().as_ref());
        let task = TaskRef::peek(&delivery.data);
        tracing::warn!(queue = death.queue, reason = death.reason, task_id = ?task.as_ref().map(|t| t.task_id), "dead letter");
        let Some(task) = task else {
            return ack(&delivery).await;
        };
        let step = match death.origin() {
            Origin::Tasks => None,
            Origin::Results | Origin::Work(_) => task.step.zip(task.attempt),
            Origin::Other => return ack(&delivery).await,
        };
        let reason = death.explain();
        if self.retry(|| self.tasks.fail(task.task_id, step, reason.clone())).await {
            ack(&delivery).await;
        }
    }

    /// Dead-letters a message that breaks the contract, after telling its task why.
    async fn refuse(&self, delivery: &Delivery, queue: &str, why: &str) {
        tracing::warn!(queue, reason = why, "refusing an invalid message; dead-lettering it");
        if let Some(task) = TaskRef::peek(&delivery.data) {
            let message = format!("the scheduler refused a message of this task: {why}");
            let lines = vec![scheduler_line(task.task_id, task.step, LogLevel::Error, message)];
            if let Err(e) = self.broker.publish(&TaskLog { task_id: task.task_id, lines }).await {
                tracing::warn!(error = %e, "could not log the refusal in the task's log");
            }
        }
        if carries_private_key(&delivery.data) {
            return self.refuse_keeping_no_key(delivery, queue, why).await;
        }
        if let Err(e) = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await {
            tracing::warn!(error = %e, "could not dead-letter a refused message");
        }
    }

    /// A refused message that carries a private key (a task request with a supplied
    /// certificate): the broker's dead letter would keep the key, so its task fails here,
    /// as that dead letter would have failed it, and the copy kept for operators has the
    /// key removed.
    async fn refuse_keeping_no_key(&self, delivery: &Delivery, queue: &str, why: &str) {
        if let Some(task) = TaskRef::peek(&delivery.data) {
            let step = task.step.zip(task.attempt);
            let reason = format!("a message of this task was refused by `{queue}`: {why}");
            if !self.retry(|| self.tasks.fail(task.task_id, step, reason.clone())).await {
                // Shutting down: the broker hands it out again to the next run.
                return;
            }
        }
        let copy = without_private_keys(&delivery.data);
        if let Err(e) = self.broker.publish_bytes(DEAD_LETTER_EXCHANGE, delivery.routing_key.as_str(), &copy).await {
            tracing::error!(error = %e, "could not keep a refused message carrying a private key; dropping it");
        }
        ack(delivery).await;
    }

    /// Runs a state change until it commits. Returns false when shutting down first;
    /// the delivery is then left unacked and the broker hands it out again.
    async fn retry<'a, F, Fut>(&'a self, mut change: F) -> bool
    where
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<(), TaskError>> + 'a,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            match change().await {
                Ok(()) => return true,
                Err(e @ TaskError::Corrupt { .. }) => {
                    // Retrying cannot repair it; the task stays as it is for an operator.
                    tracing::error!(error = %e, "giving up on a task whose stored state is damaged");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot record a task change; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// `span`, in the trace the delivery's message carries.
fn traced_span(delivery: &Delivery, span: tracing::Span) -> tracing::Span {
    extract_trace_context(delivery.properties.headers().as_ref(), &span);
    span
}

/// The span of a step result.
fn result_span(delivery: &Delivery) -> tracing::Span {
    traced_span(delivery, tracing::info_span!("step result", task_id = tracing::field::Empty))
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The change is committed; the redelivered message will be recognised as a repeat.
        tracing::warn!(error = %e, "could not ack a handled message");
    }
}

/// Where a dead letter came from and why, from the headers RabbitMQ adds.
struct Death {
    queue: String,
    reason: String,
    count: i64,
}

enum Origin {
    Tasks,
    Results,
    Work(Route),
    Other,
}

impl Death {
    fn read(headers: Option<&FieldTable>) -> Self {
        let text = |key: &str| match headers.and_then(|h| h.inner().get(key)) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
            _ => String::new(),
        };
        let count = match headers.and_then(|h| h.inner().get("x-death")) {
            Some(AMQPValue::FieldArray(deaths)) => deaths
                .as_slice()
                .iter()
                .filter_map(|d| match d {
                    AMQPValue::FieldTable(t) => match t.inner().get("count") {
                        Some(AMQPValue::LongLongInt(n)) => Some(*n),
                        Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
                        _ => None,
                    },
                    _ => None,
                })
                .next()
                .unwrap_or(1),
            _ => 1,
        };
        Self { queue: text("x-first-death-queue"), reason: text("x-first-death-reason"), count }
    }

    fn origin(&self) -> Origin {
        if self.queue == QueueName::SchedulerTasks.name() {
            Origin::Tasks
        } else if self.queue == QueueName::SchedulerResults.name() {
            Origin::Results
        } else if let Some(route) = QueueName::from_work_key(&self.queue).as_ref().and_then(QueueName::route) {
            // Both lanes' queues are named after their routing key.
            Origin::Work(route.clone())
        } else {
            Origin::Other
        }
    }

    fn explain(&self) -> String {
        let queue = &self.queue;
        match (self.reason.as_str(), self.origin()) {
            ("rejected", Origin::Work(route)) => format!(
                "the {} worker of {} refused its step message (invalid, unsigned or wrongly signed; the task's log \
                 says which); the message was dead-lettered",
                route.service, route.server
            ),
            ("rejected", _) => format!("a message of this task was refused as invalid by `{queue}` and dead-lettered"),
            ("delivery_limit", _) => format!(
                "a message of this task reached `{queue}` {} times without being handled (its consumer failed on it each time); it was dead-lettered",
                self.count.max(1)
            ),
            (reason, _) => format!("a message of this task was dead-lettered from `{queue}` ({reason})"),
        }
    }
}
