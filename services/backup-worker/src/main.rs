//! backup-worker: the backup service of one server.
//!
//! It consumes `<server>.backup` like every worker. Site backups, restores and
//! retention are its work once sites exist; until then no step belongs to it, and any
//! step that reaches it is refused with a permanent error so its task fails clearly
//! instead of being retried.

use aegir_config::{CommonArgs, LogFormat};
use aegir_contract::{ServiceKind, StepDispatched, StepFacts};
use aegir_worker::{StepError, StepHandler, StepLog, WorkerArgs, WorkerIdentity};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "backup-worker", about = "Runs the backup steps of one server's tasks")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

struct BackupWorker {
    identity: WorkerIdentity,
}

impl StepHandler for BackupWorker {
    const SERVICE: ServiceKind = ServiceKind::Backup;

    async fn run(&self, step: &StepDispatched, _log: &StepLog) -> Result<StepFacts, StepError> {
        // No step action belongs to the backup service yet; each backup action gets its
        // own arm ahead of this refusal, as in the other workers.
        Err(StepError::permanent(format!(
            "{} is not a backup step; {} cannot run it",
            step.action.label(),
            self.identity.instance
        )))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("backup-worker", cli.common.log_format == LogFormat::Json)?;
    aegir_worker::run(&cli.common.amqp_url, cli.worker, |identity| Ok(BackupWorker { identity })).await
}
