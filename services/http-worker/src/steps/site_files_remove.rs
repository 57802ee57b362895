//! `site files remove`: takes the site's directory and its alias entries off this
//! platform, leaving the vhost, which now serves the site from its new place (a
//! migrate to another platform of the same web server). Idempotent.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::for_removal(config, site)?;
    // The vhost must have moved on: removing the files it serves would take the site down.
    if work.vhost_serves_this_platform() {
        return Err(StepError::permanent(format!(
            "the vhost {} still serves {} from {}; deploy the site where it should be served before removing its files here",
            work.vhost_path().display(),
            site.uri,
            site.platform.root
        )));
    }
    work.remove_files(log).await?;
    log.info(format!("the files of {} are no longer on {}; its vhost is kept", site.uri, site.platform.name)).await;
    Ok(StepFacts::default())
}
