//! The scheduled queues' timing: a site's cron and stats fall at different moments of
//! the period, and a site found busy is asked again shortly rather than a period later.

use std::time::Duration;

use aegir_contract::TaskOutcome;
use serde_json::json;
use task_api::cron::{CRON, STATS};

use crate::helpers::TestApp;
use crate::sites::{finish, full_site, put_ok, request, setup};

const INTERVAL: Duration = Duration::from_secs(600);

/// Seconds from now to the site's next moment in `column`.
async fn due_in(app: &TestApp, uri: &str, column: &str) -> f64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT extract(epoch FROM {column} - now())::float8 FROM sites WHERE uri = $1"
    )))
    .bind(uri)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn cron_tasks(app: &TestApp, uri: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tasks WHERE kind = 'cron' AND context = $1")
        .bind(format!("@{uri}"))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_site_is_asked_again_shortly_and_its_cron_and_stats_fall_apart() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let (busy, free) = ("busy.example.com", "free.example.com");
    for uri in [busy, free] {
        let mut body = full_site();
        body["aliases"] = json!([]);
        put_ok(&app, &format!("/api/v1/sites/{uri}"), body).await;
    }
    sqlx::query("UPDATE sites SET status = 'enabled'").execute(&app.pool).await.unwrap();

    // The first round gives every site its moments in the period, one per queue.
    CRON.queue_due(&app.pool, INTERVAL).await.unwrap();
    STATS.queue_due(&app.pool, INTERVAL).await.unwrap();
    for uri in [busy, free] {
        let (cron, stats) = (due_in(&app, uri, "cron_next_at").await, due_in(&app, uri, "stats_next_at").await);
        assert!((0.0..=600.0).contains(&cron) && (0.0..=600.0).contains(&stats), "{uri}: {cron} {stats}");
        assert!((cron - stats).abs() > 1.0, "{uri}: cron and stats fall due together ({cron} s, {stats} s)");
    }

    // Both fall due while one site runs another task.
    let (verify, _) = request(&app, &format!("@{busy}"), "verify").await;
    sqlx::query("UPDATE sites SET cron_next_at = now() - interval '1 second'").execute(&app.pool).await.unwrap();
    assert_eq!(CRON.queue_due(&app.pool, INTERVAL).await.unwrap(), 1);
    assert_eq!((cron_tasks(&app, busy).await, cron_tasks(&app, free).await), (0, 1));
    // The free site's next cron is a period away; the busy one's a tenth of it.
    let free_next = due_in(&app, free, "cron_next_at").await;
    assert!(free_next > 590.0, "{free_next}");
    let busy_next = due_in(&app, busy, "cron_next_at").await;
    assert!((55.0..=60.0).contains(&busy_next), "asked again a tenth of the period later: {busy_next}");

    // Once the site is free and its retry falls due, its cron is queued.
    finish(&app, verify, TaskOutcome::Success).await;
    sqlx::query("UPDATE sites SET cron_next_at = now() - interval '1 second' WHERE uri = $1")
        .bind(busy)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(CRON.queue_due(&app.pool, INTERVAL).await.unwrap(), 1);
    assert_eq!(cron_tasks(&app, busy).await, 1);
    assert!(due_in(&app, busy, "cron_next_at").await > 590.0);
    app.stop().await;
}
