//! The backup queue: an enabled site is backed up on schedule, and retention removes
//! exactly the archives the policy no longer keeps, through `backup-delete` tasks, so
//! the store and the records go together. Real WordPress site, MariaDB, file store.

use std::time::Duration;

use aegir_e2e::{Options, System, random_suffix, start_with_php, wait_for};
use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use uuid::Uuid;

async fn backups(system: &System, uri: &str) -> Vec<Value> {
    let (_, page) = system.get(&format!("/api/v1/sites/{uri}/backups?limit=500")).await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// An archive record made long ago (its object is long gone from the store).
async fn old_archive(system: &System, uri: &str, at: DateTime<Utc>) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backups (id, site, archive_site, compression, size, sha256, database_bytes, files_bytes, entries,
                              origin, created_at)
         VALUES ($1, $2, $2, 'zstd', 1, repeat('0', 64), 1, 1, 1, 'backup', $3)",
    )
    .bind(id)
    .bind(uri)
    .bind(at)
    .execute(&system.pg)
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn sites_are_backed_up_on_schedule_and_retention_removes_what_the_policy_drops() {
    let options = Options::default()
        .env("task-api", "AEGIR_BACKUP_INTERVAL_SECS", "20")
        .env("task-api", "AEGIR_BACKUP_KEEP_DAILY", "2")
        .env("task-api", "AEGIR_BACKUP_KEEP_WEEKLY", "1");
    let (system, _fpm) = start_with_php(options).await;
    system.server_ready().await;
    system.wordpress_platform("wp").await;
    let uri = format!("kept-{}.example.com", random_suffix());
    let site = format!("@{uri}");
    system.installed_site("wp", &uri, "Backup queue test").await;

    // Within one period the site has a scheduled backup.
    let scheduled = wait_for(Duration::from_secs(60), || async {
        backups(&system, &uri).await.iter().any(|b| b["origin"] == "backup")
    })
    .await;
    assert!(scheduled, "no scheduled backup within a period");

    // History: two archives yesterday, and older ones on days the policy does not keep.
    let noon = Utc::now().date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let day = |n: u64| noon.checked_sub_days(Days::new(n)).unwrap();
    let yesterday_late = old_archive(&system, &uri, day(1) + chrono::Duration::hours(2)).await;
    let dropped = [
        old_archive(&system, &uri, day(1)).await,
        old_archive(&system, &uri, day(3)).await,
        old_archive(&system, &uri, day(10)).await,
        old_archive(&system, &uri, day(40)).await,
    ];

    // Keep 2 daily, 1 weekly: the newest archive (today's) and yesterday's later one.
    let settled = wait_for(Duration::from_secs(90), || async {
        let left = backups(&system, &uri).await;
        let ids: Vec<&str> = left.iter().filter_map(|b| b["id"].as_str()).collect();
        ids.len() == 2 && ids.contains(&yesterday_late.to_string().as_str())
    })
    .await;
    let left = backups(&system, &uri).await;
    assert!(settled, "retention did not settle on the policy's two archives: {left:#?}");
    let newest = &left[0];
    assert_eq!(newest["origin"], "backup");
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let made: DateTime<Utc> = newest["created_at"].as_str().unwrap().parse().unwrap();
    assert!(made >= today, "the newest archive is today's scheduled one: {newest}");
    for id in dropped {
        assert!(!left.iter().any(|b| b["id"] == id.to_string()), "{id} should be gone");
    }
    // Each went through a logged backup-delete task.
    let (_, tasks) = system.get(&format!("/api/v1/tasks?context={site}&limit=500")).await;
    let deletes: Vec<&Value> =
        tasks["items"].as_array().unwrap().iter().filter(|t| t["task"] == "backup-delete").collect();
    assert!(deletes.len() >= 4, "{deletes:?}");
    assert!(deletes.iter().all(|t| t["status"] == "success"), "{deletes:?}");
    // The kept archive is in the store; the real archives retention removed are not.
    let newest_id = newest["id"].as_str().unwrap();
    let store = system.backup_store_dir().join("sites").join(&uri);
    let stored: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar.zst"))
        .collect();
    assert_eq!(stored, [format!("{newest_id}.tar.zst")], "only the kept real archive is stored");
}
