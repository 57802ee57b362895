//! Backup, restore, backup-delete, clone and migrate as task-api sees them: what each
//! request carries to the scheduler, the refusals, and what the finished tasks do to
//! the records (archives listed, the clone's new site, the migrated site's new place).

use aegir_contract::{
    BackupFacts, BackupRef, Compression, PackageKind, PlatformType, StepFacts, TaskOutcome, TaskRequested,
};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, step_succeeded};
use crate::sites::{finish, full_site, package, put_ok, request, setup};

/// Queues a site task with options; returns its id and what the scheduler received.
async fn request_with(app: &TestApp, context: &str, body: Value) -> (Uuid, TaskRequested) {
    let mut body = body;
    body["context"] = json!(context);
    let (status, view) = app.post("/api/v1/tasks", body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}: {view}");
    let id: Uuid = view["id"].as_str().unwrap().parse().unwrap();
    let (requested, _) = app.next_task_request().await;
    assert_eq!(requested.task_id, id);
    (id, requested)
}

/// The backup-worker's report of a stored archive.
async fn archive_stored(app: &TestApp, task: Uuid, step: u32, backup: &BackupRef) {
    let facts = StepFacts {
        backup: Some(BackupFacts {
            backup: backup.clone(),
            size: 1234,
            sha256: "ab".repeat(32),
            database_bytes: 2000,
            files_bytes: 3000,
            entries: 7,
            created_at: Utc::now(),
        }),
        ..StepFacts::default()
    };
    app.publish(&step_succeeded(task, step, "server_master.backup", facts)).await;
}

#[tokio::test]
async fn archives_clones_and_moves_change_the_records_as_their_tasks_end() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    // The cron interval is the site's own when given: a few seconds is refused.
    let mut site = full_site();
    site["cron_interval"] = json!(5);
    let answer = app.put("/api/v1/sites/www.example.com", site.clone()).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("cron_interval"));
    site["cron_interval"] = json!(900);
    assert_eq!(put_ok(&app, "/api/v1/sites/www.example.com", site).await["cron_interval"], 900);
    put_ok(&app, "/api/v1/sites/www.example.com", full_site()).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["cron_interval"], Value::Null);
    let (install, _) = request(&app, "@www.example.com", "install").await;
    finish(&app, install, TaskOutcome::Success).await;

    // backup: the request names the archive to make; the worker's report lists it.
    let (backup_task, requested) =
        request_with(&app, "@www.example.com", json!({"task": "backup", "compression": "gzip"})).await;
    let backup = requested.options.new_backup.clone().expect("a backup names its archive");
    assert_eq!((backup.site.as_str(), backup.compression), ("www.example.com", Compression::Gzip));
    archive_stored(&app, backup_task, 1, &backup).await;
    finish(&app, backup_task, TaskOutcome::Success).await;
    let (_, list) = app.get("/api/v1/sites/www.example.com/backups").await;
    assert_eq!(list["total"], 1, "{list}");
    let item = &list["items"][0];
    assert_eq!(item["id"], backup.id.to_string());
    assert_eq!(item["origin"], "backup");
    assert_eq!(item["platform"], "@platform_wp");
    assert_eq!(item["compression"], "gzip");
    assert_eq!(app.get(&format!("/api/v1/backups/{}", backup.id)).await.1["size"], 1234);

    // restore: only an archive of this site; the request carries it and a safety copy.
    let answer = app
        .post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "restore", "backup": Uuid::now_v7()}))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", Some("backup"));
    let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "restore"})).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("backup"));
    let (restore, requested) =
        request_with(&app, "@www.example.com", json!({"task": "restore", "backup": backup.id})).await;
    assert_eq!(requested.options.from_backup.as_ref(), Some(&backup));
    let safety = requested.options.new_backup.clone().expect("a restore keeps a copy first");
    assert_ne!(safety.id, backup.id);
    archive_stored(&app, restore, 2, &safety).await;
    finish(&app, restore, TaskOutcome::Success).await;
    let (_, list) = app.get("/api/v1/sites/www.example.com/backups").await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["origin"], "restore", "newest first");

    // clone: the new site exists as `cloning` with its own database while the task runs.
    let (clone, requested) =
        request_with(&app, "@www.example.com", json!({"task": "clone", "new_uri": "staging.example.com"})).await;
    let to = requested.options.to.clone().expect("a clone names its new site");
    let source = match &requested.target {
        aegir_contract::TaskTarget::Site { site } => site.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(to.uri.as_str(), "staging.example.com");
    assert_ne!(to.database.name, source.database.name);
    assert!(to.aliases.is_empty());
    let (_, staging) = app.get("/api/v1/sites/staging.example.com").await;
    assert_eq!(staging["status"], "cloning");
    let answer = app.post("/api/v1/tasks", json!({"context": "@staging.example.com", "task": "verify"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("task"));
    assert_eq!(app.delete("/api/v1/sites/staging.example.com").await.0, StatusCode::CONFLICT);
    // The deploy's packages are the new site's.
    let facts = StepFacts {
        packages: Some(vec![package("wordpress", PackageKind::Core, Some("6.4.2"))]),
        ..StepFacts::default()
    };
    app.publish(&step_succeeded(clone, 6, "server_master.http", facts)).await;
    finish(&app, clone, TaskOutcome::Success).await;
    let (_, staging) = app.get("/api/v1/sites/staging.example.com").await;
    assert_eq!(staging["status"], "enabled");
    assert_eq!(staging["packages"][0]["name"], "wordpress");
    assert!(staging["installed_at"].is_string());
    // A taken uri is refused; a failed clone leaves no record.
    let answer = app
        .post("/api/v1/tasks", json!({"context": "@www.example.com", "task": "clone", "new_uri": "example.com"}))
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("new_uri"));
    let (failed_clone, _) =
        request_with(&app, "@www.example.com", json!({"task": "clone", "new_uri": "broken.example.com"})).await;
    finish(&app, failed_clone, TaskOutcome::Failed).await;
    assert_eq!(app.get("/api/v1/sites/broken.example.com").await.0, StatusCode::NOT_FOUND);

    // migrate: a target platform with an older application is refused unless forced.
    put_ok(&app, "/api/v1/platforms/platform_wp_old", json!({"root": "/var/aegir/platforms/wp-old"})).await;
    let (verify, _) = request(&app, "@platform_wp_old", "verify").await;
    let facts = StepFacts {
        platform_type: Some(PlatformType::Wordpress),
        packages: Some(vec![package("wordpress", PackageKind::Core, Some("6.3.1"))]),
        ..StepFacts::default()
    };
    app.publish(&step_succeeded(verify, 0, "server_master.http", facts)).await;
    finish(&app, verify, TaskOutcome::Success).await;
    let answer = app
        .post(
            "/api/v1/tasks",
            json!({"context": "@www.example.com", "task": "migrate", "platform": "@platform_wp_old"}),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("platform"));
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("6.3.1"), "{}", answer.1);
    let (migrate, requested) = request_with(
        &app,
        "@www.example.com",
        json!({"task": "migrate", "platform": "@platform_wp_old", "force": true}),
    )
    .await;
    let to = requested.options.to.clone().unwrap();
    assert_eq!(to.platform.name.as_str(), "platform_wp_old");
    assert_eq!(to.database, source.database, "a move keeps the site's database account");
    let log = app.log_reaches(migrate, 1).await;
    assert_eq!(log[0]["level"], "warning");
    assert!(log[0]["message"].as_str().unwrap().contains("older"), "{log:?}");
    // Until it ends the record stays where it was; a failed migrate changes nothing.
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["platform"], "@platform_wp");
    finish(&app, migrate, TaskOutcome::Failed).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["platform"], "@platform_wp");
    let (migrate, _) = request_with(
        &app,
        "@www.example.com",
        json!({"task": "migrate", "platform": "@platform_wp_old", "force": true}),
    )
    .await;
    finish(&app, migrate, TaskOutcome::Success).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.1["platform"], "@platform_wp_old");

    // A migrate to a new uri renames the record; aliases and archives follow it.
    let (rename, _) =
        request_with(&app, "@www.example.com", json!({"task": "migrate", "new_uri": "www.example.org"})).await;
    finish(&app, rename, TaskOutcome::Success).await;
    assert_eq!(app.get("/api/v1/sites/www.example.com").await.0, StatusCode::NOT_FOUND);
    let (_, renamed) = app.get("/api/v1/sites/www.example.org").await;
    assert_eq!(renamed["aliases"], json!(["example.com"]));
    assert_eq!(app.get("/api/v1/sites/www.example.org/backups").await.1["total"], 2);

    // A migrate to another db server gets a new database account, the site's once it succeeds.
    put_ok(
        &app,
        "/api/v1/servers/server_db2",
        json!({"db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "x"}}),
    )
    .await;
    let before: (String,) =
        sqlx::query_as("SELECT db_name FROM sites WHERE uri = 'www.example.org'").fetch_one(&app.pool).await.unwrap();
    let (to_db2, requested) =
        request_with(&app, "@www.example.org", json!({"task": "migrate", "db_server": "@server_db2"})).await;
    let to = requested.options.to.clone().unwrap();
    assert_eq!(to.db_server.name.as_str(), "server_db2");
    assert_ne!(to.database.name.as_str(), before.0, "never the same database name on the new server");
    finish(&app, to_db2, TaskOutcome::Success).await;
    let after: (String, String) = sqlx::query_as("SELECT db_name, db_server FROM sites WHERE uri = 'www.example.org'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(after, (to.database.name.as_str().to_owned(), "server_db2".to_owned()));

    // A task that changes nothing of the site (a backup) lets others queue behind it; one
    // that moves the site does not.
    let (pending_backup, _) = request_with(&app, "@www.example.org", json!({"task": "backup"})).await;
    let (behind, _) = request_with(&app, "@www.example.org", json!({"task": "verify"})).await;
    finish(&app, pending_backup, TaskOutcome::Failed).await;
    finish(&app, behind, TaskOutcome::Success).await;
    let (moving, _) =
        request_with(&app, "@www.example.org", json!({"task": "migrate", "platform": "@platform_wp", "force": true}))
            .await;
    let answer = app.post("/api/v1/tasks", json!({"context": "@www.example.org", "task": "verify"})).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", Some("context"));
    finish(&app, moving, TaskOutcome::Failed).await;

    // backup-delete: the record goes once the archive is gone.
    let (delete_backup, requested) =
        request_with(&app, "@www.example.org", json!({"task": "backup-delete", "backup": backup.id})).await;
    assert_eq!(requested.options.from_backup.as_ref(), Some(&backup));
    finish(&app, delete_backup, TaskOutcome::Success).await;
    assert_eq!(app.get("/api/v1/sites/www.example.org/backups").await.1["total"], 1);

    // delete: a final backup unless asked not to.
    let (_, requested) = request_with(&app, "@www.example.org", json!({"task": "delete"})).await;
    assert!(requested.options.new_backup.is_some());
    let (skip, requested) =
        request_with(&app, "@staging.example.com", json!({"task": "delete", "skip_backup": true})).await;
    assert!(requested.options.new_backup.is_none());
    let task = app.get(&format!("/api/v1/tasks/{skip}")).await.1;
    assert_eq!(task["options"], json!({"skip_backup": true}));
    app.stop().await;
}
