//! http-worker: the web service of one server.

mod certs;
mod coalesced;
mod config;
mod config_queue;
mod files;
mod fpm;
mod nginx_master;
mod permissions;
mod php;
mod platforms;
mod site;
mod steps;
mod vhost;
mod webserver;

use aegir_config::{CommonArgs, LogFormat};
use aegir_contract::{ServiceKind, StepAction, StepDispatched, StepFacts};
use aegir_worker::{StepError, StepHandler, StepLog, WorkerArgs, WorkerIdentity};
use clap::Parser;

use crate::config::HttpArgs;

#[derive(Debug, Parser)]
#[command(name = "http-worker", about = "Runs the web server steps of one server's tasks")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    http: HttpArgs,
}

struct HttpWorker {
    identity: WorkerIdentity,
    config: config::HttpConfig,
}

impl StepHandler for HttpWorker {
    const SERVICE: ServiceKind = ServiceKind::Http;

    async fn run(&self, step: &StepDispatched, log: &StepLog) -> Result<StepFacts, StepError> {
        match &step.action {
            StepAction::HttpServerVerify { server } => steps::server_verify::run(&self.config, server, log).await,
            StepAction::PlatformVerify { platform } => steps::platform_verify::run(&self.config, platform, log).await,
            StepAction::PlatformImport { platform } => steps::platform_import::run(&self.config, platform, log).await,
            StepAction::PlatformDelete { platform } => steps::platform_delete::run(&self.config, platform, log).await,
            StepAction::SiteInstall { site } => steps::site_install::run(&self.config, site, log).await,
            StepAction::SiteRemove { site } => steps::site_remove::run(&self.config, site, log).await,
            StepAction::SiteVerify { site } => steps::site_verify::run(&self.config, site, log).await,
            StepAction::SiteDisable { site } => steps::site_disable::run(&self.config, site, log).await,
            StepAction::SiteEnable { site } => steps::site_enable::run(&self.config, site, log).await,
            StepAction::SiteLoginReset { site } => steps::site_login_reset::run(&self.config, site, log).await,
            StepAction::SiteCron { site } => steps::site_cron::run(&self.config, site, log).await,
            StepAction::SiteStats { site } => steps::site_stats::run(&self.config, site, log).await,
            StepAction::SiteDeploy { site, renamed_from } => {
                steps::site_deploy::run(&self.config, site, renamed_from.as_ref(), log).await
            }
            StepAction::SiteUpdate { site } => steps::site_update::run(&self.config, site, log).await,
            StepAction::SiteFilesRemove { site } => steps::site_files_remove::run(&self.config, site, log).await,
            StepAction::SiteCertificate { site, renew, supplied } => {
                steps::site_certificate::run(&self.config, site, *renew, supplied.as_ref(), log).await
            }
            other => Err(StepError::permanent(format!(
                "{} is not a web server step; {} cannot run it",
                other.label(),
                self.identity.instance
            ))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("http-worker", cli.common.log_format == LogFormat::Json)?;
    let config = cli.http.resolve(&cli.worker.server, cli.worker.prefetch.into())?;
    aegir_worker::run(&cli.common.amqp_url, cli.worker, |identity| Ok(HttpWorker { identity, config })).await
}
