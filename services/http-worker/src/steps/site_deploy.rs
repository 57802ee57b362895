//! `site deploy`: puts a site whose directory and database are already in place (from
//! an archive, or copied from another site) into service on this platform. Settings
//! are rendered again (archives hold no secrets), permissions and owners fixed, what
//! the application stores about its own address updated when the site moved from
//! another uri, then the vhost written, tested and loaded. The installer is not run.
//! Idempotent.

use aegir_contract::{SiteContext, SiteUri, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::site::SiteWork;

pub async fn run(
    config: &HttpConfig,
    site: &SiteContext,
    renamed_from: Option<&SiteUri>,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let mut work = SiteWork::new(config, site)?;
    if !work.site_dir().is_dir() {
        return Err(StepError::permanent(format!(
            "the files of {} are not on {} ({} does not exist); unpack the site's archive there first",
            site.uri,
            site.platform.name,
            work.site_dir().display()
        )));
    }
    work.check_platform_type()?;
    work.warn_about_owners(log).await;
    if let Some(old) = renamed_from.filter(|old| **old != site.uri) {
        log.info(format!("{} was {old}: its settings are rendered for the new address", site.uri)).await;
    }
    work.prepare_php_user(log).await?;
    work.render_files(log).await?;
    work.fix_permissions(log).await?;
    let fixed = work.fix_file_tree().await?;
    if fixed > 0 {
        log.info(format!("gave {fixed} uploaded files and directories the web server's group and rights")).await;
    }
    work.deploy_in_application(renamed_from, log).await?;
    // A later verify or install must not run the installer over the site's data.
    work.mark_installed()?;
    // A site that was disabled stays disabled.
    let enabled = !work.is_disabled();
    work.apply_php_pool(log).await?;
    // Always reloads: a redelivered step may find the vhost written by a try that
    // stopped before reloading.
    work.apply_vhost(enabled, Reload::Always, log).await?;
    work.retire_other_php_pools(log).await?;
    let packages = work.packages().await;
    log.success(format!(
        "{} is served from {} at {} ({} packages)",
        site.uri,
        site.platform.name,
        work.files.url,
        packages.len()
    ))
    .await;
    Ok(StepFacts { packages: Some(packages), ..Default::default() })
}
