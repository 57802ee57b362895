//! dns-worker: the name service of one server: the records of the sites whose web
//! servers name it as their dns server, in BIND zone files it keeps.

mod bind;
mod zone;

use aegir_config::{CommonArgs, LogFormat};
use aegir_contract::{DnsServiceType, ServerContext, ServiceKind, SiteContext, StepAction, StepDispatched, StepFacts};
use aegir_worker::{StepError, StepHandler, StepLog, WorkerArgs, WorkerIdentity};
use clap::Parser;

use crate::bind::{Bind, BindArgs};

#[derive(Debug, Parser)]
#[command(name = "dns-worker", about = "Runs the name service steps of one server's tasks")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    bind: BindArgs,
}

struct DnsWorker {
    identity: WorkerIdentity,
    bind: Bind,
}

impl DnsWorker {
    /// The dns service a step is for, which must be this worker's server's.
    fn service_of<'a>(&self, server: &'a ServerContext) -> Result<&'a ServerContext, StepError> {
        let Some(dns) = &server.dns else {
            return Err(StepError::permanent(format!(
                "`@{}` has no dns service; save it with --dns_service_type=bind",
                server.name
            )));
        };
        match dns.service_type {
            DnsServiceType::Bind => Ok(server),
        }
    }

    fn dns_server_of<'a>(&self, site: &'a SiteContext) -> Result<&'a ServerContext, StepError> {
        let server = site.dns_server.as_ref().ok_or_else(|| {
            StepError::permanent(format!("`@{}` has no dns server; its web server names none", site.uri))
        })?;
        self.service_of(server)
    }
}

impl StepHandler for DnsWorker {
    const SERVICE: ServiceKind = ServiceKind::Dns;

    async fn run(&self, step: &StepDispatched, log: &StepLog) -> Result<StepFacts, StepError> {
        match &step.action {
            StepAction::DnsServerVerify { server } => self.bind.verify(self.service_of(server)?, log).await,
            StepAction::SiteDnsAdd { site } => self.bind.add(site, self.dns_server_of(site)?, log).await,
            StepAction::SiteDnsRemove { site } => self.bind.remove(site, self.dns_server_of(site)?, log).await,
            other => Err(StepError::permanent(format!(
                "{} is not a name service step; {} cannot run it",
                other.label(),
                self.identity.instance
            ))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = aegir_telemetry::init("dns-worker", cli.common.log_format == LogFormat::Json)?;
    let bind = Bind::new(cli.bind)?;
    tracing::info!(zones = %bind.describe(), "bind zone files");
    aegir_worker::run(&cli.common.amqp_url, cli.worker, |identity| Ok(DnsWorker { identity, bind })).await
}
