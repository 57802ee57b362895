//! `site install`, web part: the site's directory, files directory and settings; the
//! application's own installer; the vhost, tested, then a reload. Idempotent; on a
//! failure `site remove` (its undo) takes every piece away again.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let mut work = SiteWork::new(config, site)?;
    work.check_platform_type()?;
    work.warn_about_owners(log).await;
    work.prepare_php_user(log).await?;
    work.render_files(log).await?;
    work.fix_permissions(log).await?;
    work.run_installer(log).await?;
    // A repeated install keeps a disabled site disabled.
    let enabled = !work.is_disabled();
    work.apply_php_pool(log).await?;
    // Always reloads: a step run again may find the vhost written by a try that
    // stopped before the reload.
    work.apply_vhost(enabled, Reload::Always, log).await?;
    work.retire_other_php_pools(log).await?;
    log.success(format!("{} is installed at {}", site.uri, work.files.url)).await;
    Ok(StepFacts { packages: Some(work.packages().await), ..Default::default() })
}
