//! The backup data path against the real MariaDB and RabbitMQ: a site's database dumped
//! by the db-worker, archived with the site's directory by the backup-worker, checked,
//! and put back row for row and byte for byte; a damaged archive refused everywhere
//! with the site left as it was; an archive removed; and a backup-worker killed while
//! it writes an archive, which leaves nothing half written and finishes the step when
//! it comes back.
//!
//! Steps are sent straight to the workers' queues as the scheduler would send them
//! ([`System::run_step`]), so these tests do not depend on the API's backup tasks.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::*;
use aegir_e2e::{System, mariadb_admin, mariadb_service, random_suffix, wait_for};
use rand::RngCore;
use sqlx::{Connection, MySqlConnection};

const PATIENCE: Duration = Duration::from_secs(300);

fn site(system: &System) -> SiteContext {
    let server = ServerContext {
        name: ServerName::parse(&system.server).unwrap(),
        remote_host: HostName::parse("localhost").unwrap(),
        http: Some(HttpService { service_type: HttpServiceType::Nginx, port: system.http_port }),
        db: Some(mariadb_service()),
        dns: None,
    };
    let suffix = random_suffix();
    let uri = SiteUri::parse(&format!("backup-{suffix}.test")).unwrap();
    let db = DbIdent::for_site(&uri, &suffix);
    let root = system.platforms_dir().join("app");
    std::fs::create_dir_all(root.join("sites")).unwrap();
    SiteContext {
        aliases: vec![],
        redirection: false,
        platform: PlatformContext {
            name: PlatformName::parse("platform_app").unwrap(),
            root: AbsolutePath::parse(root.to_str().unwrap()).unwrap(),
            web_server: server.clone(),
            source: None,
        },
        platform_type: PlatformType::Php,
        db_server: server,
        database: SiteDatabase {
            name: db.clone(),
            user: db,
            password: Secret::new(format!("Pw{}{}", random_suffix(), random_suffix())),
        },
        profile: None,
        language: LanguageCode::parse("en").unwrap(),
        title: SiteTitle::parse("Backups").unwrap(),
        admin_email: Email::parse("admin@example.com").unwrap(),
        client: None,
        php_version: None,
        dns_server: None,
        ssl: Default::default(),
        uri,
    }
}

fn site_dir(site: &SiteContext) -> PathBuf {
    Path::new(site.platform.root.as_str()).join("sites").join(site.uri.as_str())
}

fn backup_file(system: &System, key: &str) -> PathBuf {
    system.backup_store_dir().join(key)
}

async fn ok(system: &System, action: StepAction) -> (StepFacts, Vec<LogLine>) {
    let label = action.label();
    let (result, lines) = system.run_step_logged(action, PATIENCE).await;
    match result.outcome {
        StepOutcome::Success { facts } => (facts, lines),
        StepOutcome::Failed { reason, .. } => panic!("{label} failed: {reason}"),
    }
}

/// The reason a step failed for good.
async fn refused(system: &System, action: StepAction) -> String {
    let label = action.label();
    match system.run_step(action).await.outcome {
        StepOutcome::Failed { reason, transient } => {
            assert!(!transient, "{label}: a damaged archive is no passing trouble: {reason}");
            reason
        }
        StepOutcome::Success { .. } => panic!("{label} succeeded"),
    }
}

/// A connection as the site's own user: what the site's application would see.
async fn as_site(site: &SiteContext) -> MySqlConnection {
    let options = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(mariadb_service().port)
        .username(site.database.user.as_str())
        .password(site.database.password.expose())
        .database(site.database.name.as_str());
    MySqlConnection::connect_with(&options).await.expect("the site's user logs in to its database")
}

async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The rows the site holds, blobs as hex.
async fn rows(conn: &mut MySqlConnection) -> Vec<(i32, String, String)> {
    sqlx::query_as("SELECT id, name, COALESCE(HEX(data), 'NULL') FROM items ORDER BY id").fetch_all(conn).await.unwrap()
}

/// Kind, mode, mtime and content (or target) of everything in a tree.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            format!("dir {:o} mtime {} uid {}", meta.mode() & 0o7777, meta.mtime(), meta.uid())
        } else {
            let content = std::fs::read(&path).unwrap();
            format!("file {:o} mtime {} uid {} {:?}", meta.mode() & 0o7777, meta.mtime(), meta.uid(), content)
        };
        out.insert(rel, what);
    }
    out
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The site's database (through the db-worker's own step) with a table, rows with
/// binary data, and a view.
async fn site_database(system: &System, site: &SiteContext) -> MySqlConnection {
    ok(system, StepAction::SiteDatabaseCreate { site: site.clone() }).await;
    let mut conn = as_site(site).await;
    exec(&mut conn, "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, data BLOB)").await;
    exec(&mut conn, "CREATE VIEW item_names AS SELECT name FROM items").await;
    for (id, name) in [(1, "first"), (2, "second — ünïcödé"), (3, "it's \"quoted\"\\")] {
        sqlx::query("INSERT INTO items VALUES (?, ?, ?)")
            .bind(id)
            .bind(name)
            .bind(random_bytes(4096))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

fn site_files(site: &SiteContext) -> PathBuf {
    let dir = site_dir(site);
    std::fs::create_dir_all(dir.join("files/sub")).unwrap();
    std::fs::create_dir_all(dir.join("private")).unwrap();
    std::fs::write(dir.join("settings.php"), "<?php // settings without secrets\n").unwrap();
    std::fs::set_permissions(dir.join("settings.php"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::write(dir.join("files/a.txt"), "the first file\n").unwrap();
    std::fs::write(dir.join("files/photo.bin"), random_bytes(300 * 1024)).unwrap();
    std::fs::write(dir.join("files/sub/empty.txt"), "").unwrap();
    std::os::unix::fs::symlink("photo.bin", dir.join("files/latest")).unwrap();
    std::fs::set_permissions(dir.join("private"), PermissionsExt::from_mode(0o750)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_is_archived_checked_and_put_back_exactly_and_a_damaged_archive_changes_nothing() {
    let system = System::start().await;
    let site = site(&system);
    let mut conn = site_database(&system, &site).await;
    let dir = site_files(&site);
    let rows_then = rows(&mut conn).await;
    let files_then = describe(&dir);
    let backup = BackupRef::new(site.uri.clone(), Compression::Zstd);

    let (_, dump_log) = ok(&system, StepAction::SiteDatabaseDump { site: site.clone(), backup: backup.clone() }).await;
    assert!(backup_file(&system, &backup.dump_key()).is_file(), "the dump is staged");
    assert!(dump_log.iter().any(|l| l.message.contains("dumped database")), "{dump_log:?}");
    let (facts, log) = ok(&system, StepAction::SiteArchiveCreate { site: site.clone(), backup: backup.clone() }).await;
    let facts = facts.backup.expect("the archive's facts are reported");
    let archive = backup_file(&system, &backup.archive_key());
    assert_eq!(facts.backup, backup);
    assert_eq!(facts.size, std::fs::metadata(&archive).unwrap().len());
    assert_eq!(facts.sha256.len(), 64);
    assert!(facts.database_bytes > 12 * 1024, "three 4 KiB blobs as hex: {facts:?}");
    assert_eq!(facts.entries, 8, "{facts:?}");
    assert!(facts.files_bytes >= 300 * 1024);
    assert!(backup_file(&system, &backup.manifest_key()).is_file(), "the sidecar manifest is written");
    assert!(!backup_file(&system, &backup.dump_key()).exists(), "the staged dump is gone");
    assert!(log.iter().any(|l| l.message.contains("written") && l.message.contains("MB/s")), "{log:?}");
    // Settings hold no secrets, and the database password is nowhere in the task log.
    assert!(log.iter().chain(&dump_log).all(|l| !l.message.contains(site.database.password.expose())));

    // The site changes after the backup.
    exec(&mut conn, "INSERT INTO items VALUES (4, 'added later', NULL)").await;
    exec(&mut conn, "UPDATE items SET name = 'changed' WHERE id = 1").await;
    exec(&mut conn, "DROP VIEW item_names").await;
    std::fs::write(dir.join("files/a.txt"), "edited\n").unwrap();
    std::fs::write(dir.join("files/new.txt"), "added later\n").unwrap();
    std::fs::remove_file(dir.join("files/photo.bin")).unwrap();
    drop(conn);

    let (_, log) = ok(&system, StepAction::SiteArchiveCheck { site: site.clone(), backup: backup.clone() }).await;
    assert!(log.iter().any(|l| l.message.contains("is sound")), "{log:?}");
    ok(&system, StepAction::SiteDatabaseLoad { site: site.clone(), backup: backup.clone() }).await;
    ok(&system, StepAction::SiteFilesUnpack { site: site.clone(), backup: backup.clone() }).await;

    let mut conn = as_site(&site).await;
    assert_eq!(rows(&mut conn).await, rows_then, "the rows are back, the added one gone");
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM item_names").fetch_all(&mut conn).await.unwrap();
    assert_eq!(names.len(), 3, "the view is back");
    assert_eq!(describe(&dir), files_then, "the files are back byte for byte, the added one gone");
    let sites = dir.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(sites).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "nothing but the site's directory: {leftovers:?}");

    // Both can run again (a redelivered step), also after a load cut off between
    // dropping the database and creating it again.
    drop(conn);
    let mut admin = mariadb_admin().await;
    exec(&mut admin, &format!("DROP DATABASE `{}`", site.database.name)).await;
    ok(&system, StepAction::SiteDatabaseLoad { site: site.clone(), backup: backup.clone() }).await;
    let mut conn = as_site(&site).await;
    assert_eq!(rows(&mut conn).await, rows_then, "the site's user has its database and rows again");
    ok(&system, StepAction::SiteDatabaseLoad { site: site.clone(), backup: backup.clone() }).await;
    ok(&system, StepAction::SiteFilesUnpack { site: site.clone(), backup: backup.clone() }).await;
    assert_eq!(rows(&mut conn).await, rows_then);
    assert_eq!(describe(&dir), files_then);

    // A damaged archive: a byte in the middle flipped.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&archive, &bytes).unwrap();
    exec(&mut conn, "INSERT INTO items VALUES (5, 'after the damage', NULL)").await;
    std::fs::write(dir.join("files/after.txt"), "after the damage\n").unwrap();
    let rows_now = rows(&mut conn).await;
    let files_now = describe(&dir);
    drop(conn);

    let reason = refused(&system, StepAction::SiteArchiveCheck { site: site.clone(), backup: backup.clone() }).await;
    assert!(reason.contains(&format!("archive {} is damaged", backup.archive_key())), "{reason}");
    assert!(reason.contains("it cannot be restored"), "{reason}");
    let reason = refused(&system, StepAction::SiteFilesUnpack { site: site.clone(), backup: backup.clone() }).await;
    assert!(reason.contains("is damaged") && reason.contains("was not changed"), "{reason}");
    let reason = refused(&system, StepAction::SiteDatabaseLoad { site: site.clone(), backup: backup.clone() }).await;
    assert!(reason.contains("is damaged") && reason.contains("was not changed"), "{reason}");
    let mut conn = as_site(&site).await;
    assert_eq!(rows(&mut conn).await, rows_now, "the database is as it was");
    assert_eq!(describe(&dir), files_now, "the files are as they were");

    // Removing the archive, twice.
    for _ in 0..2 {
        ok(&system, StepAction::BackupDelete { site: site.clone(), backup: backup.clone() }).await;
    }
    assert!(!archive.exists() && !backup_file(&system, &backup.manifest_key()).exists());
    let reason = refused(&system, StepAction::SiteArchiveCheck { site: site.clone(), backup: backup.clone() }).await;
    assert!(reason.contains("is not in the backup store"), "{reason}");

    // An archive whose dump step never ran.
    let orphan = BackupRef::new(site.uri.clone(), Compression::Zstd);
    let reason = refused(&system, StepAction::SiteArchiveCreate { site: site.clone(), backup: orphan }).await;
    assert!(reason.contains("the database dump step did not run or did not finish"), "{reason}");

    ok(&system, StepAction::SiteDatabaseDrop { site: site.clone() }).await;
    // A dump that mysqldump cannot make keeps nothing and says why.
    let gone = BackupRef::new(site.uri.clone(), Compression::Zstd);
    let reason = refused(&system, StepAction::SiteDatabaseDump { site: site.clone(), backup: gone.clone() }).await;
    assert!(reason.contains("mysqldump failed") && reason.contains("no dump was kept"), "{reason}");
    assert!(reason.contains(site.database.name.as_str()), "mysqldump's own message is passed on: {reason}");
    assert!(!backup_file(&system, &gone.dump_key()).exists());
    let mut admin = mariadb_admin().await;
    let left: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
        .bind(site.database.name.as_str())
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left.0, 0);
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_worker_killed_while_writing_an_archive_leaves_nothing_and_finishes_when_back() {
    let mut system = System::start().await;
    let site = site(&system);
    drop(site_database(&system, &site).await);
    let dir = site_files(&site);
    // 300 MB that does not compress: a few seconds of work.
    for i in 0..6 {
        std::fs::write(dir.join(format!("files/big-{i}.bin")), random_bytes(50 * 1024 * 1024)).unwrap();
    }
    let backup = BackupRef::new(site.uri.clone(), Compression::Zstd);
    ok(&system, StepAction::SiteDatabaseDump { site: site.clone(), backup: backup.clone() }).await;

    let pending =
        system.publish_step(StepAction::SiteArchiveCreate { site: site.clone(), backup: backup.clone() }).await;
    let archive = backup_file(&system, &backup.archive_key());
    let manifest = backup_file(&system, &backup.manifest_key());
    let partial = PathBuf::from(format!("{}#1", archive.display()));
    let writing = wait_for(PATIENCE, || async {
        assert!(!archive.exists(), "the archive was finished before the worker could be killed");
        std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 20 * 1024 * 1024)
    })
    .await;
    assert!(writing, "the backup-worker never got going:\n{}", system.log_tail("backup-worker"));
    system.kill9("backup-worker").await;
    assert!(!archive.exists(), "nothing under the archive's key");
    assert!(!manifest.exists(), "no sidecar manifest");

    system.respawn_with("backup-worker", &[]);
    let (result, lines) = tokio::time::timeout(PATIENCE, pending.wait()).await.expect("the step finishes");
    let facts = match result.outcome {
        StepOutcome::Success { facts } => facts.backup.expect("archive facts"),
        StepOutcome::Failed { reason, .. } => panic!("the redelivered archive failed: {reason}"),
    };
    assert!(lines.iter().any(|l| l.level == LogLevel::Warning && l.message.contains("interrupted")), "{lines:?}");
    // Progress lines come only every few seconds; a fast disk finishes before the first.
    assert!(lines.iter().any(|l| l.message.starts_with("archive ") && l.message.contains(" written: ")), "{lines:?}");
    assert_eq!(facts.size, std::fs::metadata(&archive).unwrap().len());
    assert!(facts.files_bytes >= 300 * 1024 * 1024);
    assert!(manifest.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(archive.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains('#'))
        .collect();
    assert!(leftovers.is_empty(), "the killed upload's leftovers are removed: {leftovers:?}");

    let pid = system.pid("backup-worker").expect("the backup-worker runs");
    let peak = peak_rss(pid);
    eprintln!("backup-worker peak RSS while archiving 300 MB: {} MiB", peak / (1024 * 1024));
    assert!(peak < 100 * 1024 * 1024, "the backup-worker peaked at {peak} bytes");

    let (_, log) = ok(&system, StepAction::SiteArchiveCheck { site: site.clone(), backup: backup.clone() }).await;
    assert!(log.iter().any(|l| l.message.contains("is sound")), "{log:?}");
    ok(&system, StepAction::BackupDelete { site: site.clone(), backup }).await;
    ok(&system, StepAction::SiteDatabaseDrop { site }).await;
}
