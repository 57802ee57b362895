//! `site update`: the application's own update of the site's database to the code of
//! the platform it just moved to (Drupal's pending updates, WordPress's `wp_upgrade`,
//! MediaWiki's `update.php`), run with the platform's PHP, its output streamed to the
//! task log line by line. Running it again finds nothing left to do.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::new(config, site)?;
    if !work.site_dir().is_dir() {
        return Err(StepError::permanent(format!(
            "{} is not on {} ({} does not exist); deploy it there first",
            site.uri,
            site.platform.name,
            work.site_dir().display()
        )));
    }
    work.check_platform_type()?;
    let env = work.files.app_env()?;
    let Some(job) = work.platform.update(&work.files, env) else {
        log.info(format!("{} platforms have no update step of their own; nothing to do", site.platform_type)).await;
        return Ok(StepFacts::default());
    };
    if let Some(missing) = work.platform.missing_tool(&work.files.root) {
        return Err(StepError::permanent(missing));
    }
    let what = job.what;
    log.info(format!("running {what} with the PHP of {}", site.platform.name)).await;
    crate::php::run_logged(&config.php_cli(site), job, log).await?;
    log.success(format!("{what} finished: {} is up to date with {}", site.uri, site.platform.name)).await;
    Ok(StepFacts::default())
}
