//! Verify of every site of a platform on one web server, as a fleet operation: N sites of
//! a plain PHP platform (an `index.php`; site rows inserted straight into task-api's
//! tables, each with its directory), one batch verify over the API, timed until its
//! summary says all done. The first verify writes every vhost; the second finds nothing
//! to change. Reloads are counted from nginx's own log (its master logs `reconfiguring`
//! at notice level for each one), config tests from the http-worker's log. Next to it:
//! one `nginx -t` and one reload (signal to new workers) with the N vhosts in place.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegir_e2e::{Options, System, log_field};
use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::setup;
use crate::stats::rate;

#[derive(clap::Args)]
pub struct Args {
    /// Sites on the platform.
    #[arg(long, default_value_t = 10_000)]
    pub sites: usize,
    /// Tasks the batch runs at once (the API allows 1 to 5000).
    #[arg(long, default_value_t = 2000)]
    pub parallel: usize,
    /// Steps the http-worker runs at once (`AEGIR_PREFETCH`); batches get all but one,
    /// and half of those fill a reload's window while the other half come in. A step
    /// waits for the reload that makes its vhost live, so this bounds how many changes
    /// one reload can carry.
    #[arg(long, default_value_t = 2001)]
    pub worker_steps: usize,
    /// Sites asked for over HTTP afterwards, spread over the platform.
    #[arg(long, default_value_t = 50)]
    pub http_sample: usize,
    /// A directory to copy the services' and nginx's logs to at the end.
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

const PLATFORM: &str = "fleet";

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "== fleet-verify: {} sites of one PHP platform on one nginx, batch verify with parallel {}, http-worker running {} steps at once",
        args.sites, args.parallel, args.worker_steps
    );
    crate::print_load();
    let options = Options::default().env("http-worker", "AEGIR_PREFETCH", &args.worker_steps.to_string());
    let (system, _fpm) = aegir_e2e::start_with_php(options).await;
    system.server_ready().await;
    let root = system.php_platform(PLATFORM).await;

    let started = Instant::now();
    let uris = system.insert_enabled_sites(PLATFORM, &root, PLATFORM, args.sites).await;
    println!("  {} sites inserted (rows and directories) in {:.2} s", args.sites, started.elapsed().as_secs_f64());

    let first = verify_all(&system, args.parallel).await?;
    check_served(&system, &uris, args.http_sample).await?;
    let second = verify_all(&system, args.parallel).await?;
    check_served(&system, &uris, args.http_sample).await?;
    let (test, reload) = references(&system).await?;
    if let Some(to) = &args.logs {
        copy_logs(&system, to)?;
    }

    println!("  batch verify (POST /api/v1/batches -> summary `done`, polled every 100 ms):");
    first.print("first: every vhost new", args.sites);
    second.print("second: nothing to change", args.sites);
    println!("  reference with {} vhosts on this nginx:", args.sites);
    println!("  {:<44} {:>10.2} s", "nginx -t", test.as_secs_f64());
    println!("  {:<44} {:>10.2} s", "reload (SIGHUP -> new workers)", reload.as_secs_f64());
    // A cycle carries half the steps a batch may run on the worker (at most `parallel`);
    // the other half come in meanwhile, so its test and reload overlap the tasks unless
    // the batch has no more to start.
    let window = args.worker_steps.saturating_sub(1).max(1).div_ceil(2).min(args.parallel.max(1));
    let waves = args.sites.div_ceil(window);
    println!("  what bounds the first verify:");
    println!("  {:<44} {:>10.1} s", "the tasks alone (the second verify)", second.wall.as_secs_f64());
    println!(
        "  {:<44} {:>10.1} s",
        format!("+ {waves} cycles of nginx -t and reload, in series"),
        second.wall.as_secs_f64() + waves as f64 * (test + reload).as_secs_f64()
    );
    let goal = |run: &Run| {
        let wall = run.wall.as_secs_f64();
        let time = if wall <= 60.0 { "met".to_owned() } else { format!("missed by {:.1} s", wall - 60.0) };
        let reloads = if run.reloads <= 10 { "met".to_owned() } else { format!("missed by {}", run.reloads - 10) };
        format!("<= 60 s: {time}; <= 10 reloads: {reloads}")
    };
    if args.sites == 10_000 {
        println!("  goal for the first verify: {}", goal(&first));
        println!("  goal for the second verify: {}", goal(&second));
    }
    Ok(())
}

fn nginx(conf: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("nginx").arg("-c").arg(conf).args(args).output()?;
    if !out.status.success() {
        bail!("nginx {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn copy_logs(system: &System, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(system.dir.path().join("logs"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    std::fs::copy(system.nginx_error_log(), to.join("nginx-error.log"))?;
    Ok(())
}

/// What the http-worker's config queue did so far, from its log lines.
#[derive(Debug, Default, Clone)]
struct Cycles {
    /// Each cycle as `changes: collecting + testing + flushing + reloading s`.
    each: Vec<String>,
    cycles: usize,
    changes: usize,
    tests: usize,
    waited: Duration,
    testing: Duration,
    flushing: Duration,
    reloading: Duration,
}

impl Cycles {
    fn read(system: &System) -> Self {
        let mut total = Self::default();
        for line in system.config_cycles() {
            let field = |name: &str| log_field(&line, name);
            total.each.push(format!(
                "{}: {:.1}+{:.1}+{:.1}+{:.1}",
                field("changes"),
                field("waited_ms") as f64 / 1000.0,
                field("test_ms") as f64 / 1000.0,
                field("flush_ms") as f64 / 1000.0,
                field("reload_ms") as f64 / 1000.0
            ));
            total.cycles += 1;
            total.changes += field("changes") as usize;
            total.tests += field("tests") as usize;
            total.waited += Duration::from_millis(field("waited_ms"));
            total.testing += Duration::from_millis(field("test_ms"));
            total.flushing += Duration::from_millis(field("flush_ms"));
            total.reloading += Duration::from_millis(field("reload_ms"));
        }
        total
    }

    fn since(self, before: &Self) -> Self {
        Self {
            each: self.each[before.each.len()..].to_vec(),
            cycles: self.cycles - before.cycles,
            changes: self.changes - before.changes,
            tests: self.tests - before.tests,
            waited: self.waited.saturating_sub(before.waited),
            testing: self.testing.saturating_sub(before.testing),
            flushing: self.flushing.saturating_sub(before.flushing),
            reloading: self.reloading.saturating_sub(before.reloading),
        }
    }
}

struct Run {
    wall: Duration,
    succeeded: i64,
    reloads: usize,
    cycles: Cycles,
}

impl Run {
    fn print(&self, what: &str, sites: usize) {
        let c = &self.cycles;
        println!(
            "  {:<44} {:>10.1} tasks/s  ({:.2} s, {} succeeded)",
            what,
            rate(sites, self.wall),
            self.wall.as_secs_f64(),
            self.succeeded
        );
        println!(
            "  {:<44} {:>10} reloads, {} config tests, {} vhosts changed",
            "  web server", self.reloads, c.tests, c.changes
        );
        if c.cycles > 0 {
            println!(
                "  {:<44} {:>10} cycles: collecting {:.1} s, testing {:.1} s, flushing {:.1} s, reloading {:.1} s in all",
                "  http-worker config queue",
                c.cycles,
                c.waited.as_secs_f64(),
                c.testing.as_secs_f64(),
                c.flushing.as_secs_f64(),
                c.reloading.as_secs_f64()
            );
            println!("    each cycle, changes: collecting+testing+flushing+reloading s: {}", c.each.join(", "));
        }
    }
}

/// One batch verify of the platform, from the request until its summary says done.
async fn verify_all(system: &System, parallel: usize) -> anyhow::Result<Run> {
    let (reloads_before, cycles_before) = (system.nginx_reloads(), Cycles::read(system));
    let started = Instant::now();
    let body = json!({"platform": format!("@platform_{PLATFORM}"), "task": "verify", "parallel": parallel});
    let batch = setup::post(system, "/api/v1/batches", body).await?;
    let id = batch["id"].as_str().with_context(|| format!("no batch id in {batch}"))?.to_owned();
    let mut progress = Instant::now();
    let view: Value = loop {
        let view = setup::get(system, &format!("/api/v1/batches/{id}")).await?;
        if view["status"] != "running" {
            break view;
        }
        if progress.elapsed() > Duration::from_secs(10) {
            println!("    … {:.0} s: {}", started.elapsed().as_secs_f64(), view["summary"]);
            progress = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the batch did not finish in 30 minutes: {view}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    let summary = &view["summary"];
    if view["status"] != "done" || summary["failed"] != 0 {
        bail!("the batch ended {}: {summary}; failures: {}", view["status"], view["failures"]);
    }
    // The worker logs a cycle once it has answered it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Run {
        wall,
        succeeded: summary["success"].as_i64().unwrap_or(0),
        reloads: system.nginx_reloads() - reloads_before,
        cycles: Cycles::read(system).since(&cycles_before),
    })
}

/// Every site has its vhost, and a sample of them answer with their own page.
async fn check_served(system: &System, uris: &[String], sample: usize) -> anyhow::Result<()> {
    let vhosts = system.config_dir().join("vhost.d");
    let missing: Vec<&String> = uris.iter().filter(|u| !vhosts.join(format!("{u}.conf")).is_file()).collect();
    if !missing.is_empty() {
        bail!("{} sites have no vhost, e.g. {}", missing.len(), missing[0]);
    }
    let step = (uris.len() / sample.max(1)).max(1);
    for uri in uris.iter().step_by(step).take(sample) {
        let (status, body, _) = aegir_e2e::fetch(uri, system.http_port, "/", false).await;
        if status != 200 || !body.contains(&format!("site {uri}\n")) {
            bail!("{uri} answered {status}: {body}");
        }
    }
    Ok(())
}

/// One `nginx -t` and one reload of this system's nginx, timed.
async fn references(system: &System) -> anyhow::Result<(Duration, Duration)> {
    let conf = system.nginx_conf();
    let started = Instant::now();
    nginx(conf, &["-t", "-q"])?;
    let test = started.elapsed();

    let pid_file = system.dir.path().join("nginx/nginx.pid");
    let master = std::fs::read_to_string(&pid_file)?.trim().to_owned();
    let children = || std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
    let before: Vec<String> = children().split_whitespace().map(str::to_owned).collect();
    let started = Instant::now();
    let status = std::process::Command::new("kill").args(["-HUP", &master]).status()?;
    if !status.success() {
        bail!("kill -HUP {master} failed");
    }
    loop {
        if children().split_whitespace().any(|c| !before.iter().any(|b| b == c)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("nginx started no new workers within 120 s of the reload signal");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((test, started.elapsed()))
}
