//! A WordPress site install through the whole system — `PUT /api/v1/sites/{uri}`, then
//! the `install` task (db-worker: database and user; http-worker: files, settings,
//! WordPress's own installer, vhost, reload) — timed from the task request to the
//! task's `finished_at`. Next to it, the same operations done directly by this program
//! (see [`bare`]), on the same platform, database server and nginx.

pub(crate) mod bare;

use std::path::Path;
use std::time::{Duration, Instant};

use aegir_e2e::{Options, PhpFpm, System, copy_tree_resolving, random_suffix};
use anyhow::Context;
use serde_json::json;

use crate::setup::{self, between, time};
use crate::stats::{Samples, ms};

#[derive(clap::Args)]
pub struct Args {
    /// Sites to install each way (through the system, and directly).
    #[arg(long, default_value_t = 5)]
    pub sites: usize,
}

const TASK_POLL: Duration = Duration::from_millis(50);

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("== site-install: {} WordPress sites through the system, {} directly", args.sites, args.sites);
    crate::print_load();
    let sites = args.sites.max(1);
    let fpm = PhpFpm::start();
    let socket = fpm.socket.display().to_string();
    let system =
        setup::system_with_server(Options::default().env("http-worker", "AEGIR_PHP_FPM_SOCKET", &socket)).await;
    let root = wordpress_platform(&system).await?;

    let mut bare_sites = Vec::with_capacity(sites);
    let measured = take_turns(&system, &root, sites, &mut bare_sites).await;
    let checked = match (&measured, bare_sites.last()) {
        // The direct way made a working site too, not just files.
        (Ok(_), Some(site)) => answers(&system, &site.uri, &site.title).await,
        _ => Ok(()),
    };
    let dropped = drop_databases(&system, &bare_sites).await;
    let (through_system, direct) = measured?;
    checked?;
    dropped?;

    let (system_times, bare_times) = (Samples::new(through_system), Samples::new(direct));
    println!("  system: POST install sent -> the task's finished_at, the scheduler's time for its end (includes");
    println!("          both workers' steps, the queue hops and the package scan; not the PUT saving the site):");
    println!(
        "  {:<44} median {:>12}  mean {:>12}  (n={})",
        "install through the system",
        ms(system_times.median()),
        ms(system_times.mean()),
        system_times.len()
    );
    println!("  reference: the same database statements, files, installer run, vhost, `nginx -t`, reload, in-process:");
    println!(
        "  {:<44} median {:>12}  mean {:>12}  (n={})",
        "install done directly",
        ms(bare_times.median()),
        ms(bare_times.mean()),
        bare_times.len()
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
    println!(
        "  {:<44} median {:>11.2}x  mean {:>11.2}x",
        "system / direct",
        ratio(system_times.median(), bare_times.median()),
        ratio(system_times.mean(), bare_times.mean())
    );
    Ok(())
}

/// Installs `sites` sites each way, taking turns so neither way gains from running later
/// (warmer caches, bigger tables). The system's first site is the reference the direct
/// way copies. Every direct site goes into `bare_sites` before its install starts, so
/// what a failed one left can be cleaned up.
async fn take_turns(
    system: &System,
    root: &Path,
    sites: usize,
    bare_sites: &mut Vec<bare::Site>,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let suffix = random_suffix();
    let (mut through_system, mut direct) = (Vec::with_capacity(sites), Vec::with_capacity(sites));
    let mut reference = None;
    for i in 0..sites {
        let title = format!("Bench site {i}");
        let uri = format!("sys{i}-{suffix}.example.com");
        through_system.push(install_through_system(system, &uri, &title).await?);
        if reference.is_none() {
            reference = Some(bare::Reference::load(system, root, &uri).await?);
        }
        let reference = reference.as_ref().expect("loaded on the first turn");
        bare_sites.push(bare::Site::new(format!("bare{i}-{suffix}.example.com"), title));
        let start = Instant::now();
        bare::install(reference, bare_sites.last().expect("pushed above")).await?;
        direct.push(start.elapsed());
    }
    Ok((through_system, direct))
}

/// Saves the site and runs its `install` task: from the task request to `finished_at`.
pub(crate) async fn install_through_system(system: &System, uri: &str, title: &str) -> anyhow::Result<Duration> {
    let body = json!({"platform": "@platform_wp", "db_server": format!("@{}", system.server), "title": title});
    setup::put(system, &format!("/api/v1/sites/{uri}"), body).await?;
    let (id, sent) = setup::post_task(system, &format!("@{uri}"), "install").await?;
    let view = setup::wait_success(system, &id, TASK_POLL).await?;
    Ok(between(sent, time(&view, "finished_at")?))
}

/// Whether `uri` answers on the system's nginx with its own title (asking for up to
/// 10 s: workers from before the last reload may answer a last request).
async fn answers(system: &System, uri: &str, title: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .resolve(uri, std::net::SocketAddr::from(([127, 0, 0, 1], system.http_port)))
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("http://{uri}:{}/", system.http_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() && body.contains(title) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{url} answered {status} without the title `{title}`: {}",
                body.chars().take(500).collect::<String>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A verified server and a verified WordPress platform (Debian's package) on it.
pub(crate) async fn wordpress_platform(system: &System) -> anyhow::Result<std::path::PathBuf> {
    let (id, _) = setup::post_task(system, &format!("@{}", system.server), "verify").await?;
    setup::wait_success(system, &id, TASK_POLL).await.context("server verify")?;
    let root = system.platforms_dir().join("wordpress");
    copy_tree_resolving(Path::new("/usr/share/wordpress"), &root, &["wp-config.php", ".htaccess"]);
    let body = json!({"root": root.display().to_string(), "web_server": format!("@{}", system.server)});
    setup::put(system, "/api/v1/platforms/platform_wp", body).await?;
    let (id, _) = setup::post_task(system, "@platform_wp", "verify").await?;
    setup::wait_success(system, &id, TASK_POLL).await.context("platform verify")?;
    Ok(root)
}

/// Drops the MariaDB databases and users of every site made here (the system's and
/// the direct ones); the rest goes with the system's directory.
async fn drop_databases(system: &System, bare_sites: &[bare::Site]) -> anyhow::Result<()> {
    let mut accounts: Vec<(String, String)> =
        sqlx::query_as("SELECT db_name, db_user FROM sites").fetch_all(&system.pg).await?;
    accounts.extend(bare_sites.iter().map(|s| (s.db_name.clone(), s.db_name.clone())));
    let mut admin = bare::admin().await?;
    for (name, user) in accounts {
        bare::drop_database(&mut admin, &name, &user).await?;
    }
    Ok(())
}
