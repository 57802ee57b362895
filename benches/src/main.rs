//! `aegir-bench`: measures the whole system, started through the end-to-end harness
//! (`aegir-e2e`), and prints each figure next to a reference measured in the same run.
//! A benchmark, not a test: it judges no timing, and exits non-zero only when the
//! workload itself fails.

mod api_list;
mod backup;
mod broker;
mod cpu;
mod dispatch;
mod fleet_verify;
mod memory;
mod setup;
mod site_install;
mod stats;
mod throughput;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "aegir-bench", about = "Benchmarks of the whole Aegir system against bare references")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Latency from the API request to the worker starting the step, next to a bare broker round trip.
    Dispatch(dispatch::Args),
    /// Sustained no-op tasks per second, next to the bare broker's confirmed publish+consume rate.
    Throughput(throughput::Args),
    /// Site list and search latency over many sites, and the services' memory.
    ApiList(api_list::Args),
    /// A WordPress site install through the system, next to the same operations done directly.
    SiteInstall(site_install::Args),
    /// A site's backup and restore through the system, next to tar | zstd, mysqldump and mysql.
    Backup(backup::Args),
    /// A batch verify of every site of a platform on one web server: wall time and reloads,
    /// next to one config test and one reload with that many vhosts.
    FleetVerify(fleet_verify::Args),
    /// Every benchmark in turn.
    All(AllArgs),
}

#[derive(clap::Args)]
struct AllArgs {
    /// Sequential ping tasks for `dispatch`.
    #[arg(long, default_value_t = 300)]
    dispatch_tasks: usize,
    /// Ping tasks for `throughput`.
    #[arg(long, default_value_t = 5000)]
    throughput_tasks: usize,
    /// Platforms the `throughput` tasks are spread over.
    #[arg(long, default_value_t = 200)]
    platforms: usize,
    /// Site rows for `api-list`.
    #[arg(long, default_value_t = 100_000)]
    sites: i64,
    /// WordPress sites installed by `site-install` (each way).
    #[arg(long, default_value_t = 5)]
    install_sites: usize,
    /// MiB of site files for `backup`.
    #[arg(long, default_value_t = 1024)]
    backup_files_mib: u64,
    /// MiB of database rows for `backup`.
    #[arg(long, default_value_t = 200)]
    backup_db_mib: u64,
    /// Sites verified by `fleet-verify`.
    #[arg(long, alias = "fleet_sites", default_value_t = 10_000)]
    fleet_sites: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Dispatch(args) => dispatch::run(args).await,
        Bench::Throughput(args) => throughput::run(args).await,
        Bench::ApiList(args) => api_list::run(args).await,
        Bench::SiteInstall(args) => site_install::run(args).await,
        Bench::Backup(args) => backup::run(args).await,
        Bench::FleetVerify(args) => fleet_verify::run(args).await,
        Bench::All(all) => {
            dispatch::run(dispatch::Args { tasks: all.dispatch_tasks }).await?;
            throughput::run(throughput::Args { tasks: all.throughput_tasks, platforms: all.platforms, in_flight: 64 })
                .await?;
            api_list::run(api_list::Args { sites: all.sites, requests: 500 }).await?;
            site_install::run(site_install::Args { sites: all.install_sites }).await?;
            backup::run(backup::Args { files_mib: all.backup_files_mib, db_mib: all.backup_db_mib }).await?;
            fleet_verify::run(fleet_verify::Args {
                sites: all.fleet_sites,
                parallel: 2000,
                worker_steps: 2001,
                http_sample: 50,
                logs: None,
            })
            .await
        }
    }
}

/// The machine's load when a benchmark starts: other work on the machine shows in
/// every figure, so it is printed with them.
fn print_load() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let averages: Vec<&str> = load.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("  machine: {cores} cores, load average {} (1, 5, 15 min)", averages.join(" "));
}
