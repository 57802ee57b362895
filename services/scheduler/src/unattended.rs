//! Steps no worker is there to take. A step sent to a server whose workers are not
//! running (stopped, crashed, or never installed on a new server) waits in its queue
//! until they come: nothing is lost. The task log says so, once per step, so whoever
//! watches `aegir @server_web2 verify` learns why nothing happens and what to start.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aegir_amqp::Broker;
use aegir_amqp::topology::QueueName;
use aegir_contract::{LogLevel, ServiceKind, TaskRequested};
use aegir_postgres::Outbox;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::plan;
use crate::tasks::log;

/// A step is unattended when no worker took it this long after it was sent.
const GRACE: Duration = Duration::from_secs(5);

/// Checks running tasks' steps every few seconds until shutdown.
pub async fn watch(pool: PgPool, broker: Broker, outbox: Outbox, deadline: Duration, shutdown: CancellationToken) {
    // Steps already reported: (task, step, attempt).
    let mut told = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(GRACE) => {}
            _ = shutdown.cancelled() => return,
        }
        match check(&pool, &broker, deadline, &mut told).await {
            Ok(0) => {}
            Ok(_) => outbox.wake(),
            Err(e) => tracing::warn!(error = %e, "could not check for steps no worker takes"),
        }
    }
}

/// The service's binary, for telling the operator what to start.
fn worker_binary(service: ServiceKind) -> &'static str {
    match service {
        ServiceKind::Http => "http-worker",
        ServiceKind::Db => "db-worker",
        ServiceKind::Backup => "backup-worker",
        ServiceKind::Dns => "dns-worker",
    }
}

/// Logs a warning on each step sent over `GRACE` ago to a queue without consumers; the
/// number of warnings written.
async fn check(
    pool: &PgPool,
    broker: &Broker,
    deadline: Duration,
    told: &mut HashSet<(Uuid, i32, i32)>,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    // `step_deadline` is set to the sending time plus the deadline.
    let rows: Vec<(Uuid, i32, i32, i32, serde_json::Value)> = sqlx::query_as(
        "SELECT task_id, current_step, attempt, steps, request FROM tasks
         WHERE status = 'running' AND request IS NOT NULL
           AND step_deadline < now() + make_interval(secs => $1)
         ORDER BY step_deadline LIMIT 500",
    )
    .bind((deadline.saturating_sub(GRACE)).as_secs_f64())
    .fetch_all(pool)
    .await?;
    let current: HashSet<(Uuid, i32, i32)> =
        rows.iter().map(|(id, step, attempt, ..)| (*id, *step, *attempt)).collect();
    told.retain(|key| current.contains(key));

    let mut waiting = Vec::new();
    for (task_id, step, attempt, steps, request) in rows {
        if told.contains(&(task_id, step, attempt)) || step >= steps {
            // Undo steps go to servers that just ran this task's steps.
            continue;
        }
        let Ok(request) = serde_json::from_value::<TaskRequested>(request) else { continue };
        let Some(planned) = plan::steps(&request).into_iter().nth(step as usize) else { continue };
        let queue = QueueName::work(planned.action.route(), request.lane);
        waiting.push(((task_id, step, attempt), queue));
    }
    let mut consumers: HashMap<String, u32> = HashMap::new();
    let mut written = 0;
    for (key, queue) in waiting {
        let name = queue.name();
        let count = match consumers.get(&name) {
            Some(count) => *count,
            None => {
                let count = broker.consumers(&queue).await?;
                consumers.insert(name.clone(), count);
                count
            }
        };
        told.insert(key);
        if count > 0 {
            continue;
        }
        let route = queue.route().expect("a work queue has a route");
        let message = format!(
            "no worker is taking work from {name}: this step waits there until `{} --server {}` runs and \
             connects to the broker (nothing is lost meanwhile)",
            worker_binary(route.service),
            route.server
        );
        let mut tx = pool.begin().await?;
        log(&mut tx, key.0, Some(key.1 as u32), LogLevel::Warning, message).await?;
        tx.commit().await?;
        written += 1;
    }
    Ok(written)
}
