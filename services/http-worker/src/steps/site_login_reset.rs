//! `site login-reset`: a one-time login for the site's administrator, written to the
//! task log for the user who asked for it.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::new(config, site)?;
    if !work.is_installed() {
        return Err(StepError::permanent(format!("{} is not installed; install it first", site.uri)));
    }
    if let Some(missing) = work.platform.missing_tool(&work.files.root) {
        return Err(StepError::permanent(missing));
    }
    let env = work.files.app_env()?;
    let job = work.platform.login_link(&work.files, env).ok_or_else(|| {
        StepError::permanent(format!(
            "{} platforms have no administrator account to log in with; manage the application's users yourself",
            site.platform_type
        ))
    })?;
    let marker = job.success_marker;
    let out = crate::php::run(&config.php_cli(site), job).await?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let link = match marker {
        Some(m) => lines.iter().skip_while(|l| **l != m).nth(1),
        None => lines.last(),
    }
    .ok_or_else(|| StepError::permanent("the application printed no login link"))?;
    log.success(format!("one-time login: {link}")).await;
    Ok(StepFacts::default())
}
