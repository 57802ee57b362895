//! Old finished tasks and their logs are pruned; recent and unfinished ones stay.

use std::time::Duration;

use uuid::Uuid;

use crate::helpers::TestApp;

async fn task(app: &TestApp, status: &str, finished_days_ago: Option<i32>) -> Uuid {
    task_of_kind(app, "verify", status, finished_days_ago).await
}

async fn task_of_kind(app: &TestApp, kind: &str, status: &str, finished_days_ago: Option<i32>) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tasks (id, context, context_type, kind, status, created_at, finished_at)
         VALUES ($1, '@server_master', 'server', $4, $2, now() - interval '400 days',
                 now() - make_interval(days => $3))",
    )
    .bind(id)
    .bind(status)
    .bind(finished_days_ago)
    .bind(kind)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO task_log (line_id, task_id, at, level, source, message)
         VALUES ($1, $2, now(), 'info', 'scheduler', 'a line')",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

async fn exists(app: &TestApp, id: Uuid) -> (bool, i64) {
    let task: (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let lines: (i64,) =
        sqlx::query_as("SELECT count(*) FROM task_log WHERE task_id = $1").bind(id).fetch_one(&app.pool).await.unwrap();
    (task.0, lines.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_tasks_past_retention_go_with_their_logs_and_the_rest_stay() {
    let app = TestApp::spawn().await;
    let old_success = task(&app, "success", Some(120)).await;
    let old_failed = task(&app, "failed", Some(95)).await;
    let recent = task(&app, "success", Some(10)).await;
    let running = task(&app, "running", None).await;
    // Successful cron runs go after a day; a failed one stays as long as other tasks.
    let old_cron = task_of_kind(&app, "cron", "success", Some(2)).await;
    let failed_cron = task_of_kind(&app, "cron", "failed", Some(2)).await;

    let pruned = task_api::retention::prune(&app.pool, Duration::from_secs(90 * 86_400)).await.unwrap();
    assert_eq!(pruned, 3);
    assert_eq!(exists(&app, old_cron).await, (false, 0));
    assert_eq!(exists(&app, failed_cron).await, (true, 1));
    assert_eq!(exists(&app, old_success).await, (false, 0));
    assert_eq!(exists(&app, old_failed).await, (false, 0));
    assert_eq!(exists(&app, recent).await, (true, 1));
    assert_eq!(exists(&app, running).await, (true, 1));
    assert_eq!(task_api::retention::prune(&app.pool, Duration::from_secs(90 * 86_400)).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn partners_commands_are_remembered_as_long_as_tasks() {
    let app = TestApp::spawn().await;
    for (key, days_ago) in [("old", 91), ("recent", 10)] {
        sqlx::query(
            "INSERT INTO commands (partner, idempotency_key, command, reply, created_at)
             VALUES ('billing', $1, '{}', '{}', now() - make_interval(days => $2))",
        )
        .bind(key)
        .bind(days_ago)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let keep = Duration::from_secs(90 * 86_400);
    assert_eq!(task_api::retention::prune_commands(&app.pool, keep).await.unwrap(), 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM commands").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, ["recent"]);
}
