//! The cron and stats queues: every enabled site's cron runs once per interval, as a
//! `cron` task the scheduler sends to the web server's worker, and a disabled site's
//! never does; every enabled site's figures are measured and served by the API. Real
//! WordPress sites on nginx and php-fpm.

use std::time::Duration;

use aegir_e2e::{Options, System, random_suffix, start_with_php, wait_for};
use serde_json::Value;

const INTERVAL_SECS: u64 = 8;

/// The cron tasks of a site, newest first.
async fn cron_tasks(system: &System, uri: &str) -> Vec<Value> {
    let (_, page) = system.get(&format!("/api/v1/tasks?context=@{uri}&limit=500")).await;
    page["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|t| t["task"] == "cron").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_runs_for_every_enabled_site_and_for_no_disabled_one_and_stats_measure_them() {
    let options = Options::default().env("task-api", "AEGIR_CRON_INTERVAL_SECS", &INTERVAL_SECS.to_string()).env(
        "task-api",
        "AEGIR_STATS_INTERVAL_SECS",
        &INTERVAL_SECS.to_string(),
    );
    let (system, _fpm) = start_with_php(options).await;
    system.server_ready().await;
    system.wordpress_platform("wp").await;

    let suffix = random_suffix();
    let sites: Vec<String> = ["one", "two", "off"].iter().map(|n| format!("cron-{n}-{suffix}.example.com")).collect();
    for uri in &sites {
        system.installed_site("wp", uri, "Cron test").await;
    }
    let off = &sites[2];
    system.cli_ok(&[&format!("@{off}"), "disable"]).await;
    // Timestamps are compared parsed: their text varies in precision.
    let since = chrono::Utc::now();
    let after = |tasks: Vec<Value>| -> Vec<Value> {
        tasks
            .into_iter()
            .filter(|t| {
                t["created_at"]
                    .as_str()
                    .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    .is_some_and(|at| at > since)
            })
            .collect()
    };

    // Within a period every enabled site's cron has run, and succeeded: each site's runs
    // are a period apart (on its own moment), plus the half second a queue's round may
    // take to notice and the seconds the task takes on a busy machine.
    let patience = Duration::from_secs(INTERVAL_SECS + 8);
    let ran = wait_for(patience, || async {
        let mut all = true;
        for uri in &sites[..2] {
            let done = after(cron_tasks(&system, uri).await).into_iter().any(|t| t["status"] == "success");
            all &= done;
        }
        all
    })
    .await;
    assert!(ran, "cron did not run for every enabled site within a period");
    let log = system.task_log(after(cron_tasks(&system, &sites[0]).await)[0]["id"].as_str().unwrap()).await;
    assert!(log.iter().any(|(_, s, m)| s.ends_with(".http") && m.contains("cron of")), "{log:?}");
    let disabled = after(cron_tasks(&system, off).await);
    assert!(disabled.is_empty(), "a disabled site's cron never runs: {disabled:?}");

    // The stats queue measured the enabled sites: database, files, HTTP, the application.
    for uri in &sites[..2] {
        let measured = wait_for(Duration::from_secs(2 * INTERVAL_SECS + 20), || async {
            let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
            view["stats"]["figures"]["users"].is_u64() && view["stats"]["database_bytes"].is_u64()
        })
        .await;
        let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
        assert!(measured, "no figures for {uri}: {view}");
        let stats = &view["stats"];
        assert!(stats["database_bytes"].as_u64().unwrap() > 0, "{stats}");
        assert!(stats["database_tables"].as_u64().unwrap() >= 10, "WordPress has its tables: {stats}");
        assert!(stats["files"].as_u64().unwrap() >= 1, "{stats}");
        assert_eq!(stats["http_status"], 200, "{stats}");
        assert!(stats["response_ms"].is_u64(), "{stats}");
        assert_eq!(stats["figures"]["users"], 1, "the installer's administrator: {stats}");
        assert!(stats["figures"]["posts"].as_u64().unwrap() >= 1, "WordPress's first post: {stats}");
        let shown = system.cli_ok(&["show", &format!("@{uri}")]).await;
        assert!(shown.contains("  http         200 in ") && shown.contains("1 users"), "{shown}");
    }
}
