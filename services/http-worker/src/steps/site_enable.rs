//! `site enable`: the vhost serves the site again.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    SiteWork::new(config, site)?.set_enabled(true, log).await?;
    Ok(StepFacts::default())
}
