//! `site cron`: the application's periodic jobs, run once with the platform's PHP.

use aegir_contract::{SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::site::SiteWork;

pub async fn run(config: &HttpConfig, site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::new(config, site)?;
    if !work.is_installed() {
        return Err(StepError::permanent(format!("{} is not installed; install it first", site.uri)));
    }
    if work.is_disabled() {
        log.info(format!("{} is disabled; its cron does not run", site.uri)).await;
        return Ok(StepFacts::default());
    }
    let env = work.files.app_env()?;
    let Some(job) = work.platform.cron(&work.files, env) else {
        log.info(format!("{} platforms have no periodic jobs to run", site.platform_type)).await;
        return Ok(StepFacts::default());
    };
    let started = std::time::Instant::now();
    let out = crate::php::run(&config.php_cli(site), job).await?;
    for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).take(20) {
        log.info(line.to_owned()).await;
    }
    log.info(format!("cron of {} ran in {:.1} s", site.uri, started.elapsed().as_secs_f32())).await;
    Ok(StepFacts::default())
}
