//! backup-worker: the backup service of one server.
//!
//! It consumes `<server>.backup` like every worker and runs the steps that need a site's
//! files: writing a site's archive (its files around the database dump the db-worker
//! staged), checking an archive, unpacking an archive's files in place of the site's
//! directory, and removing an archive. It also builds platforms from their source (a
//! git repository or a `.tar.gz` in the store), since it reaches both the platform roots
//! and the store. Archives live in the backup store
//! (`--backup-store`), which the db-worker of the site's database server shares.

mod steps;

use aegir_backup_store::{BackupStore, StoreArgs};
use aegir_config::{CommonArgs, LogFormat};
use aegir_contract::{AbsolutePath, ServiceKind, StepAction, StepDispatched, StepFacts};
use aegir_worker::{StepError, StepHandler, StepLog, WorkerArgs, WorkerIdentity};
use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "backup-worker", about = "Runs the backup steps of one server's tasks")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Directories platforms may live in, separated by `:`; site directories elsewhere
    /// are neither archived nor written.
    #[arg(long, env = "AEGIR_PLATFORM_ROOTS", default_value = "/var/aegir/platforms")]
    platform_roots: String,
}

pub struct BackupWorker {
    identity: WorkerIdentity,
    store: BackupStore,
    platform_roots: Vec<AbsolutePath>,
}

impl StepHandler for BackupWorker {
    const SERVICE: ServiceKind = ServiceKind::Backup;

    async fn run(&self, step: &StepDispatched, log: &StepLog) -> Result<StepFacts, StepError> {
        match &step.action {
            StepAction::SiteArchiveCreate { site, backup } => steps::archive_create::run(self, site, backup, log).await,
            StepAction::SiteArchiveCheck { backup, .. } => steps::archive_check::run(self, backup, log).await,
            StepAction::SiteFilesUnpack { site, backup } => steps::files_unpack::run(self, site, backup, log).await,
            StepAction::BackupDelete { backup, .. } => steps::backup_delete::run(self, backup, log).await,
            StepAction::PlatformBuild { platform } => {
                steps::platform_build::run(self, platform, &step.task_id.to_string(), log).await
            }
            StepAction::PlatformBuildRemove { platform } => {
                steps::platform_build::remove(self, platform, &step.task_id.to_string(), log).await
            }
            other => Err(StepError::permanent(format!(
                "{} is not a backup step; {} cannot run it",
                other.label(),
                self.identity.instance
            ))),
        }
    }
}

fn platform_roots(value: &str) -> anyhow::Result<Vec<AbsolutePath>> {
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|s| AbsolutePath::parse(s).with_context(|| "in AEGIR_PLATFORM_ROOTS"))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("backup-worker", cli.common.log_format == LogFormat::Json)?;
    let store = BackupStore::from_args(&cli.store)?;
    let platform_roots = platform_roots(&cli.platform_roots)?;
    tracing::info!(store = %store, "backup store");
    aegir_worker::run(&cli.common.amqp_url, cli.worker, |identity| Ok(BackupWorker { identity, store, platform_roots }))
        .await
}
