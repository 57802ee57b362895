//! The scheduled queues' timing: a site's cron and stats fall at different moments of
//! the period, a site found busy is asked again shortly rather than a period later, a
//! site's own cron interval counts, and every site keeps its moment in the period
//! after missed rounds.

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

/// The site's moment in its period: seconds since the epoch of `column`, modulo `period`.
async fn phase(app: &TestApp, uri: &str, column: &str, period: f64) -> f64 {
    let at: f64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT extract(epoch FROM {column})::float8 FROM sites WHERE uri = $1"
    )))
    .bind(uri)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    at.rem_euclid(period)
}

/// Whether two moments in a period of `period` seconds are the same, to the millisecond.
fn same_moment(a: f64, b: f64, period: f64) -> bool {
    let d = (a - b).rem_euclid(period);
    d < 0.001 || period - d < 0.001
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
    // The free site's next cron is its own moment, at least half a period away; the
    // busy one's a tenth of the period.
    let free_next = due_in(&app, free, "cron_next_at").await;
    assert!((299.0..=900.0).contains(&free_next), "{free_next}");
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
    let busy_next = due_in(&app, busy, "cron_next_at").await;
    assert!((299.0..=900.0).contains(&busy_next), "{busy_next}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sites_keep_their_moment_after_missed_rounds_and_a_sites_own_cron_interval_counts() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    // `own` runs cron every 2 minutes, `off` never, the others by the installation's interval.
    let sites = ["one.example.com", "two.example.com", "own.example.com", "off.example.com"];
    for uri in sites {
        let mut body = full_site();
        body["aliases"] = json!([]);
        match uri {
            "own.example.com" => body["cron_interval"] = json!(120),
            "off.example.com" => body["cron_interval"] = json!(0),
            _ => {}
        }
        put_ok(&app, &format!("/api/v1/sites/{uri}"), body).await;
    }
    sqlx::query("UPDATE sites SET status = 'enabled'").execute(&app.pool).await.unwrap();
    let period = |uri: &str| if uri == "own.example.com" { 120.0 } else { 600.0 };

    CRON.queue_due(&app.pool, INTERVAL).await.unwrap();
    let mut moments = Vec::new();
    for uri in &sites[..3] {
        let due = due_in(&app, uri, "cron_next_at").await;
        assert!((0.0..=period(uri)).contains(&due), "{uri}: first run in {due} s");
        moments.push(phase(&app, uri, "cron_next_at", period(uri)).await);
    }
    assert!(!same_moment(moments[0], moments[1], 600.0), "two sites fall due together: {moments:?}");
    let off_next: Option<f64> =
        sqlx::query_scalar("SELECT extract(epoch FROM cron_next_at)::float8 FROM sites WHERE uri = 'off.example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(off_next, None, "a site with cron off is never due");

    // task-api was away for three periods: every due site runs once, then falls back on
    // its own moment, at least half a period on, instead of all of them bunching up.
    sqlx::query(
        "UPDATE sites SET cron_next_at = cron_next_at - make_interval(secs => 3 * COALESCE(cron_interval, 600))",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(CRON.queue_due(&app.pool, INTERVAL).await.unwrap(), 3);
    for (uri, moment) in sites[..3].iter().zip(&moments) {
        assert_eq!(cron_tasks(&app, uri).await, 1, "{uri}");
        let (due, period) = (due_in(&app, uri, "cron_next_at").await, period(uri));
        assert!(due >= period / 2.0 - 1.0 && due <= period * 1.5, "{uri}: next run in {due} s");
        let now = phase(&app, uri, "cron_next_at", period).await;
        assert!(same_moment(now, *moment, period), "{uri}: moment {now} s, was {moment} s");
    }
    assert_eq!(cron_tasks(&app, "off.example.com").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_takes_every_due_site_however_many_are_due() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    // More than two rounds' worth of due sites, inserted directly as the bench does.
    let mut body = full_site();
    body["aliases"] = json!([]);
    put_ok(&app, "/api/v1/sites/one.example.com", body).await;
    let copied = sqlx::query(
        "INSERT INTO sites (uri, platform, db_server, status, language, title, admin_email, db_name, db_user,
                            db_password, cron_next_at)
         SELECT 'bulk' || n || '.example.com', platform, db_server, 'enabled', language, title, admin_email,
                'bulk' || n, 'bulk' || n, db_password, now() - interval '1 minute'
         FROM sites, generate_series(1, 450) n WHERE uri = 'one.example.com'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(copied.rows_affected(), 450);
    // The site they were copied from is not enabled: only the copies are due.
    assert_eq!(CRON.queue_due(&app.pool, INTERVAL).await.unwrap(), 450);
    assert_eq!(cron_tasks(&app, "bulk450.example.com").await, 1);
    let late: i64 = sqlx::query_scalar("SELECT count(*) FROM sites WHERE uri LIKE 'bulk%' AND cron_next_at <= now()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(late, 0);
    app.stop().await;
}
