//! db-worker: the database service of one server: the admin login, site databases and
//! their users, and site database dumps into (and loads from) the backup store.

mod client;
mod mariadb;
mod steps;

use aegir_backup_store::{BackupStore, StoreArgs};
use aegir_config::{CommonArgs, LogFormat};
use aegir_contract::{ServiceKind, StepAction, StepDispatched, StepFacts};
use aegir_worker::{StepError, StepHandler, StepLog, WorkerArgs, WorkerIdentity};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "db-worker", about = "Runs the database steps of one server's tasks")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
}

struct DbWorker {
    identity: WorkerIdentity,
    store: BackupStore,
}

impl StepHandler for DbWorker {
    const SERVICE: ServiceKind = ServiceKind::Db;

    async fn run(&self, step: &StepDispatched, log: &StepLog) -> Result<StepFacts, StepError> {
        match &step.action {
            StepAction::DbServerVerify { server } => steps::server_verify::run(server, log).await,
            StepAction::SiteDatabaseCreate { site } => steps::site_database::create(site, log).await,
            StepAction::SiteDatabaseDrop { site } => steps::site_database::drop(site, log).await,
            StepAction::SiteDatabaseStats { site } => steps::site_stats::run(site, log).await,
            StepAction::SiteDatabaseDump { site, backup } => {
                steps::site_backup::dump(&self.store, site, backup, log).await
            }
            StepAction::SiteDatabaseLoad { site, backup } => {
                steps::site_backup::load(&self.store, site, backup, log).await
            }
            other => Err(StepError::permanent(format!(
                "{} is not a database step; {} cannot run it",
                other.label(),
                self.identity.instance
            ))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("db-worker", cli.common.log_format == LogFormat::Json)?;
    let store = BackupStore::from_args(&cli.store)?;
    tracing::info!(store = %store, "backup store");
    aegir_worker::run(&cli.common.amqp_url, cli.worker, |identity| Ok(DbWorker { identity, store })).await
}
