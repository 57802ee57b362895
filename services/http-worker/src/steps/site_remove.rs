//! `site remove`: takes the site's vhost away (and reloads), then its directory and
//! alias entries. Also the undo of `site install`, so it cleans up a half-done one.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::for_removal(config, site)?;
    work.remove(log).await?;
    log.info(format!("{} is no longer on {}", site.uri, site.platform.web_server.name)).await;
    Ok(StepFacts::default())
}
