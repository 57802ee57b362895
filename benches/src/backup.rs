//! A site's backup and restore through the whole system — the `backup` task (db-worker:
//! `mysqldump` through zstd into the store; backup-worker: the site's directory and the
//! dump into one checked archive), then the `restore` task of that archive — timed from
//! the task request to the task's `finished_at`, on a WordPress site filled with
//! generated files and database rows ([`data`]). Next to it, the same data archived,
//! dumped, unpacked and loaded by the plain tools ([`reference`]), and the peak memory
//! of the backup-worker and db-worker while the tasks ran.

mod data;
mod reference;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aegir_e2e::{Options, PhpFpm, System, random_suffix};
use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Executor};

use crate::memory::{self, PeakSampler};
use crate::setup::{self, between, time};
use crate::site_install::{self, bare};
use data::{MIB, Tree};
use reference::Reference;

#[derive(clap::Args)]
pub struct Args {
    /// MiB of generated files in the site's `files/` directory.
    #[arg(long, default_value_t = 1024)]
    pub files_mib: u64,
    /// MiB of generated rows in the site's database.
    #[arg(long, default_value_t = 200)]
    pub db_mib: u64,
}

const TASK_POLL: Duration = Duration::from_millis(200);
/// The services whose memory is watched, and the backup-worker's goal.
const WATCHED: [&str; 2] = ["backup-worker", "db-worker"];
const GOAL_MB: f64 = 100.0;

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "== backup: a WordPress site with {} MiB of generated files and {} MiB of database rows, backed up and \
         restored through the system, next to tar | zstd, mysqldump and mysql on the same data",
        args.files_mib, args.db_mib
    );
    crate::print_load();
    let fpm = PhpFpm::start();
    let socket = fpm.socket.display().to_string();
    let system =
        setup::system_with_server(Options::default().env("http-worker", "AEGIR_PHP_FPM_SOCKET", &socket)).await;
    let scratch = tempfile::Builder::new().prefix("aegir-bench-backup-").tempdir().context("creating a scratch dir")?;
    let reference_db = format!("aegir_bench_ref_{}", random_suffix());
    let measured = measure(&system, &args, scratch.path(), &reference_db).await;
    let cleaned = clean_up(&system, &reference_db).await;
    measured?.print();
    cleaned
}

/// What was measured, for the table printed at the end.
struct Figures {
    files: Tree,
    rows: data::Rows,
    /// Bytes of the site's files and of its database dump, as the archive's manifest counts them.
    files_bytes: u64,
    database_bytes: u64,
    archive_size: u64,
    backup: Duration,
    backup_steps: Vec<Step>,
    restore: Duration,
    restore_steps: Vec<Step>,
    worker_lines: Vec<String>,
    ref_files: Duration,
    ref_dump: Duration,
    ref_dump_plain: Duration,
    ref_unpack: Duration,
    ref_load: Duration,
    ref_sizes: (u64, u64, u64),
    peak_backup: BTreeMap<&'static str, u64>,
    peak_restore: BTreeMap<&'static str, u64>,
    hwm: BTreeMap<&'static str, u64>,
}

async fn measure(system: &System, args: &Args, scratch: &Path, reference_db: &str) -> anyhow::Result<Figures> {
    let root = site_install::wordpress_platform(system).await?;
    let uri = format!("backup-{}.example.com", random_suffix());
    site_install::install_through_system(system, &uri, "Backup bench").await.context("installing the site")?;
    let database: String = sqlx::query_scalar("SELECT db_name FROM sites WHERE uri = $1")
        .bind(&uri)
        .fetch_one(&system.pg)
        .await
        .context("reading the site's database name")?;
    let site_dir = root.join("sites").join(&uri);
    let files_dir = site_dir.join("files");

    let started = Instant::now();
    let budget = args.files_mib * MIB;
    let dir = files_dir.clone();
    let made = tokio::task::spawn_blocking(move || data::write_files(&dir, budget)).await??;
    let files_took = started.elapsed();
    let started = Instant::now();
    let rows = data::fill_database(&mut connect(Some(&database)).await?, args.db_mib * MIB).await?;
    println!(
        "  generated {} in {} files and {} directories in {:.1} s; {} in {} rows of `{}` in {:.1} s",
        mib(made.bytes),
        made.files,
        made.dirs,
        files_took.as_secs_f64(),
        mib(rows.bytes),
        rows.rows,
        data::TABLE,
        started.elapsed().as_secs_f64()
    );
    let files = data::measure(&files_dir)?;
    let pids: Vec<(&'static str, u32)> = WATCHED.iter().filter_map(|s| system.pid(s).map(|pid| (*s, pid))).collect();

    // Through the system: the backup task, then the restore of its archive.
    let sampler = PeakSampler::start(pids.clone());
    let (id, sent) = setup::post_task(system, &format!("@{uri}"), "backup").await?;
    let view = setup::wait_success(system, &id, TASK_POLL).await.context("the backup task")?;
    let peak_backup = sampler.finish().await;
    let finished = time(&view, "finished_at")?;
    let backup = between(sent, finished);
    let log = task_log(system, &id).await?;
    let backup_steps = steps(&log, finished);
    let mut worker_lines = worker_figures(&log, "backup");
    let archive = archive_of(system, &uri, &id).await?;
    let (files_bytes, database_bytes) = (number(&archive, "files_bytes")?, number(&archive, "database_bytes")?);
    println!("  system backup: {:.1} s", backup.as_secs_f64());

    // The references on the same data: archive and dumps.
    let reference = Reference::new(scratch, bare::admin_parts())?;
    let ref_files = reference.archive_files(&site_dir).await?;
    let ref_dump = reference.dump_compressed(&database).await?;
    let ref_dump_plain = reference.dump_plain(&database).await?;
    println!(
        "  reference backup: tar | zstd {:.1} s, mysqldump | zstd {:.1} s, mysqldump > /dev/null {:.1} s",
        ref_files.as_secs_f64(),
        ref_dump.as_secs_f64(),
        ref_dump_plain.as_secs_f64()
    );

    // Changes after the backup, which the restore must undo.
    std::fs::write(files_dir.join("added-after-the-backup.txt"), "not in the archive")?;
    connect(Some(&database)).await?.execute(AssertSqlSafe(format!("DELETE FROM {} LIMIT 100", data::TABLE))).await?;

    let sampler = PeakSampler::start(pids.clone());
    let backup_id = archive["id"].as_str().context("no backup id")?;
    let body = json!({"context": format!("@{uri}"), "task": "restore", "backup": backup_id});
    let (id, sent) = setup::post_task_body(system, body).await?;
    let view = setup::wait_success(system, &id, TASK_POLL).await.context("the restore task")?;
    let peak_restore = sampler.finish().await;
    let finished = time(&view, "finished_at")?;
    let restore = between(sent, finished);
    let log = task_log(system, &id).await?;
    let restore_steps = steps(&log, finished);
    worker_lines.extend(worker_figures(&log, "restore"));
    let hwm = pids.iter().filter_map(|(s, pid)| memory::status_kib(*pid, "VmHWM").map(|k| (*s, k))).collect();
    println!("  system restore: {:.1} s", restore.as_secs_f64());
    // What a user would check: the files and rows are those of the backup.
    let restored = data::measure(&files_dir)?;
    ensure!(restored == files, "the restored files are {restored:?}, the backup held {files:?}");
    ensure!(
        count_rows(&database).await? == rows.rows,
        "the restored `{}` does not hold the {} rows of the backup",
        data::TABLE,
        rows.rows
    );

    // The references: unpack, and load into a database of their own.
    let ref_unpack = reference.unpack_files().await?;
    let dump_size = reference.decompress_dump().await?;
    connect(None).await?.execute(AssertSqlSafe(format!("CREATE DATABASE `{reference_db}`"))).await?;
    let ref_load = reference.load(reference_db).await?;
    println!(
        "  reference restore: zstd -d | tar -x {:.1} s, mysql < dump.sql {:.1} s",
        ref_unpack.as_secs_f64(),
        ref_load.as_secs_f64()
    );
    let unpacked = data::measure(&reference.unpacked().join("files"))?;
    ensure!(unpacked == files, "tar unpacked {unpacked:?} of files, the site held {files:?}");
    ensure!(count_rows(reference_db).await? == rows.rows, "mysql loaded another number of rows");
    let ref_sizes = (file_size(&reference.files_archive())?, file_size(&reference.compressed_dump())?, dump_size);

    Ok(Figures {
        files,
        rows,
        files_bytes,
        database_bytes,
        archive_size: number(&archive, "size")?,
        backup,
        backup_steps,
        restore,
        restore_steps,
        worker_lines,
        ref_files,
        ref_dump,
        ref_dump_plain,
        ref_unpack,
        ref_load,
        ref_sizes,
        peak_backup,
        peak_restore,
        hwm,
    })
}

/// A MariaDB admin connection, in `database` when given.
async fn connect(database: Option<&str>) -> anyhow::Result<MySqlConnection> {
    let mut conn = bare::admin().await?;
    if let Some(database) = database {
        conn.execute(AssertSqlSafe(format!("USE `{database}`"))).await.with_context(|| format!("USE {database}"))?;
    }
    Ok(conn)
}

async fn count_rows(database: &str) -> anyhow::Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM `{database}`.{}", data::TABLE);
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut connect(None).await?).await?;
    Ok(count as u64)
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len())
}

async fn task_log(system: &System, id: &str) -> anyhow::Result<Vec<Value>> {
    let log = setup::get(system, &format!("/api/v1/tasks/{id}/log")).await?;
    log["items"].as_array().cloned().with_context(|| format!("no log items in {log}"))
}

/// The archive the backup task `task_id` made, as `GET /api/v1/sites/{uri}/backups` lists it.
async fn archive_of(system: &System, uri: &str, task_id: &str) -> anyhow::Result<Value> {
    let list = setup::get(system, &format!("/api/v1/sites/{uri}/backups")).await?;
    let items = list["items"].as_array().with_context(|| format!("no backups listed: {list}"))?;
    match items.iter().find(|b| b["task_id"].as_str() == Some(task_id)) {
        Some(archive) => Ok(archive.clone()),
        None => bail!("the backup task {task_id} left no archive in the list: {list}"),
    }
}

fn number(view: &Value, field: &str) -> anyhow::Result<u64> {
    view[field].as_u64().with_context(|| format!("no `{field}` in {view}"))
}

/// A task's step, from the scheduler's line dispatching it to the next one's (the
/// last to the task's end): the step as the system runs it, queue hops included.
struct Step {
    label: String,
    took: Duration,
}

fn steps(log: &[Value], finished: DateTime<Utc>) -> Vec<Step> {
    let mut starts: Vec<(String, DateTime<Utc>)> = Vec::new();
    for line in log.iter().filter(|l| l["source"] == "scheduler") {
        let message = line["message"].as_str().unwrap_or_default();
        // `step 2 of 5: site archive create on server_x.backup`
        let Some(rest) = message.strip_prefix("step ") else { continue };
        let Some((_, label)) = rest.split_once(": ") else { continue };
        let label = label.rsplit_once(" on ").map_or(label, |(label, _)| label);
        if let Ok(at) = time(line, "at") {
            starts.push((label.to_owned(), at));
        }
    }
    let ends: Vec<DateTime<Utc>> = starts.iter().skip(1).map(|(_, at)| *at).chain([finished]).collect();
    starts.into_iter().zip(ends).map(|((label, start), end)| Step { label, took: between(start, end) }).collect()
}

/// The workers' own closing figures of each step (the lines with a rate, not the
/// progress lines written while it runs).
fn worker_figures(log: &[Value], task: &str) -> Vec<String> {
    log.iter()
        .filter(|l| l["source"] != "scheduler")
        .filter_map(|l| l["message"].as_str())
        .filter(|m| m.contains(" MB/s") && !m.contains("so far") && !m.contains("% ("))
        .map(|m| format!("{task}: {m}"))
        .collect()
}

/// The time of the steps with this label, together.
fn took(steps: &[Step], label: &str) -> Duration {
    steps.iter().filter(|s| s.label == label).map(|s| s.took).sum()
}

impl Figures {
    fn print(&self) {
        let (files, db) = (self.files_bytes, self.database_bytes);
        println!(
            "  site data: files {} in {} files (the site directory with its settings: {}); database {} rows \
             with {} of values, {} of SQL dumped",
            mib(self.files.bytes),
            self.files.files,
            mib(files),
            self.rows.rows,
            mib(self.rows.bytes),
            mib(db)
        );
        let (ref_archive, ref_dump_zst, ref_dump) = self.ref_sizes;
        println!(
            "  stored: system archive {} (files + dump); reference files.tar.zst {} + dump.sql.zst {} \
             (dump.sql {})",
            mib(self.archive_size),
            mib(ref_archive),
            mib(ref_dump_zst),
            mib(ref_dump)
        );
        println!("  steps as the system ran them (scheduler dispatch to the next step):");
        for (task, steps) in [("backup", &self.backup_steps), ("restore", &self.restore_steps)] {
            for step in steps {
                println!("    {task:<8} {:<28} {:>8.1} s", step.label, step.took.as_secs_f64());
            }
        }
        println!("  the workers' own figures:");
        for line in &self.worker_lines {
            println!("    {line}");
        }

        // The safety copy a restore takes first is a backup of its own: without it, what
        // the restore itself costs.
        let safety = took(&self.restore_steps, "site database dump") + took(&self.restore_steps, "site archive create");
        let restore_only = self.restore.saturating_sub(safety);
        let both = files + db;
        let rows = [
            Row::new("backup task (files + database)", both, Some(self.backup), self.ref_files + self.ref_dump)
                .reference("mysqldump | zstd, then tar | zstd"),
            Row::new(
                "  database dump step (database)",
                db,
                Some(took(&self.backup_steps, "site database dump")),
                self.ref_dump,
            )
            .reference("mysqldump | zstd -3 -T1"),
            Row::new(
                "  archive create step (files + database)",
                both,
                Some(took(&self.backup_steps, "site archive create")),
                self.ref_files,
            )
            .reference_bytes(files)
            .reference("tar | zstd -3 -T1 (files only)"),
            Row::new("restore task (files + database)", both, Some(self.restore), self.ref_unpack + self.ref_load)
                .reference("zstd -d | tar -x, then mysql < dump.sql"),
            Row::new("  without its safety backup", both, Some(restore_only), self.ref_unpack + self.ref_load)
                .reference("the same"),
            Row::new(
                "  database load step (database)",
                db,
                Some(took(&self.restore_steps, "site database load")),
                self.ref_load,
            )
            .reference("mysql < dump.sql"),
            Row::new(
                "  files unpack step (files)",
                files,
                Some(took(&self.restore_steps, "site files unpack")),
                self.ref_unpack,
            )
            .reference("zstd -d | tar -x"),
            Row::new("plain dump (database)", db, None, self.ref_dump_plain).reference("mysqldump > /dev/null"),
        ];
        println!("  throughput: bytes / wall time; ratio = system MB/s / reference MB/s (1.00 = as fast)");
        println!(
            "  {:<44} {:>13} {:>16} {:>7}   reference",
            "operation (bytes counted)", "system MB/s", "reference MB/s", "ratio"
        );
        for row in rows {
            row.print();
        }

        println!("  peak resident memory (goal: the backup-worker under {GOAL_MB:.0} MB throughout)");
        println!("  {:<44} {:>14} {:>14} {:>16}", "service", "backup VmRSS", "restore VmRSS", "VmHWM (whole run)");
        for service in WATCHED {
            let mb = |m: &BTreeMap<&'static str, u64>| m.get(service).map_or(0.0, |k| *k as f64 * 1024.0 / 1e6);
            let worst = mb(&self.peak_backup).max(mb(&self.peak_restore)).max(mb(&self.hwm));
            let verdict = match (service, worst < GOAL_MB) {
                ("backup-worker", true) => "under the goal",
                ("backup-worker", false) => "OVER the goal",
                _ => "",
            };
            println!(
                "  {service:<44} {:>11.1} MB {:>11.1} MB {:>13.1} MB   {verdict}",
                mb(&self.peak_backup),
                mb(&self.peak_restore),
                mb(&self.hwm)
            );
        }
    }
}

/// One line of the table: each side's bytes and time.
struct Row {
    label: &'static str,
    system: Option<(u64, Duration)>,
    reference: (u64, Duration),
    what: &'static str,
}

impl Row {
    fn new(label: &'static str, bytes: u64, system: Option<Duration>, reference: Duration) -> Self {
        Self { label, system: system.map(|t| (bytes, t)), reference: (bytes, reference), what: "" }
    }

    fn reference_bytes(mut self, bytes: u64) -> Self {
        self.reference.0 = bytes;
        self
    }

    fn reference(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    fn print(&self) {
        let rate = |(bytes, took): (u64, Duration)| bytes as f64 / took.as_secs_f64().max(f64::EPSILON) / 1e6;
        let reference = rate(self.reference);
        let (system, ratio) = match self.system {
            Some(s) => (format!("{:.1}", rate(s)), format!("{:.2}", rate(s) / reference)),
            None => ("-".into(), "-".into()),
        };
        println!("  {:<44} {system:>13} {reference:>16.1} {ratio:>7}   {}", self.label, self.what);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Drops the site's database and user and the reference's database; the site's files,
/// the archives and the reference's files go with their directories.
async fn clean_up(system: &System, reference_db: &str) -> anyhow::Result<()> {
    let accounts: Vec<(String, String)> =
        sqlx::query_as("SELECT db_name, db_user FROM sites").fetch_all(&system.pg).await?;
    let mut admin = bare::admin().await?;
    for (name, user) in accounts {
        bare::drop_database(&mut admin, &name, &user).await?;
    }
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{reference_db}`"))).await?;
    Ok(())
}
