//! `site verify`: settings and vhost rendered again, permissions fixed, packages
//! scanned; the web server reloads only when its config changed.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let mut work = SiteWork::new(config, site)?;
    if !work.site_dir().is_dir() {
        return Err(StepError::permanent(format!(
            "{} is not installed on {} ({} does not exist); run install first",
            site.uri,
            site.platform.name,
            work.site_dir().display()
        )));
    }
    work.warn_about_owners(log).await;
    work.prepare_php_user(log).await?;
    let files_changed = work.render_files(log).await?;
    let perms_changed = work.fix_permissions(log).await?;
    let enabled = !work.is_disabled();
    work.apply_php_pool(log).await?;
    let vhost_changed = work.apply_vhost(enabled, Reload::IfChanged, log).await?;
    work.retire_other_php_pools(log).await?;
    if !vhost_changed {
        log.info("vhost unchanged; no reload needed").await;
    }
    if !files_changed && !perms_changed && !vhost_changed {
        log.info("settings, permissions and vhost were already as they should be").await;
    }
    let packages = work.packages().await;
    log.info(format!("found {} packages", packages.len())).await;
    Ok(StepFacts { packages: Some(packages), ..Default::default() })
}
