//! `site certificate`: a site with ssl gets a certificate for its uri and aliases over
//! ACME when it has none, when its certificate expires within the renewal window or
//! no longer covers its names, or when a renewal is asked for; the new certificate
//! goes live with the site's vhost (tested and reloaded with the others), and the old
//! one is removed only then. A failed order keeps the old certificate serving: the step
//! still succeeds, reporting the failure in its facts (the site shows it, and the
//! renewal queue tries again) and in the task log, never silently.

use aegir_contract::{CertificateFacts, SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};
use chrono::Utc;

use crate::certs::{self, CertInfo, CertStore};
use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::site::SiteWork;

fn facts(info: Option<&CertInfo>, error: Option<String>) -> StepFacts {
    StepFacts {
        certificate: Some(CertificateFacts {
            expires_at: info.map(|i| i.not_after),
            issuer: info.map(|i| i.issuer.clone()),
            serial: info.map(|i| i.serial.clone()),
            error,
        }),
        ..StepFacts::default()
    }
}

pub async fn run(config: &HttpConfig, site: &SiteContext, renew: bool, log: &StepLog) -> Result<StepFacts, StepError> {
    let work = SiteWork::new(config, site)?;
    if !work.site_dir().is_dir() {
        return Err(StepError::permanent(format!(
            "{} is not installed on {} ({} does not exist); run install first",
            site.uri,
            site.platform.name,
            work.site_dir().display()
        )));
    }
    if site.ssl.is_off() {
        log.info(format!("{} is served over http only (ssl off): no certificate needed", site.uri)).await;
        return Ok(StepFacts::default());
    }
    let uri = site.uri.as_str();
    let names: Vec<String> = site.dns_names().map(|n| n.as_str().to_owned()).collect();
    let store = CertStore::new(&config.certs);
    let current = store.current(uri);
    let info = match current.as_ref().map(|c| certs::read(&c.cert)) {
        Some(Ok(info)) => Some(info),
        Some(Err(e)) => {
            log.warning(format!("the certificate of {uri} cannot be read ({e}); ordering a new one")).await;
            None
        }
        None => None,
    };
    let window = chrono::Duration::days(i64::from(config.certs.renew_days));
    let why = match &info {
        None => Some("it has no certificate yet".to_owned()),
        Some(_) if renew => Some("a renewal was asked for".to_owned()),
        Some(i) if i.not_after <= Utc::now() + window => {
            Some(format!("its certificate expires at {} (renewed {} days ahead)", i.not_after, config.certs.renew_days))
        }
        Some(i) if names.iter().any(|n| !i.names.contains(n)) => {
            Some("its certificate does not cover all of its names (they changed)".to_owned())
        }
        Some(_) => None,
    };
    let Some(why) = why else {
        let i = info.as_ref().expect("a certificate that needs no renewal exists");
        log.info(format!(
            "the certificate of {uri} is valid until {} for {}; not renewed",
            i.not_after,
            i.names.join(", ")
        ))
        .await;
        return Ok(facts(info.as_ref(), None));
    };
    log.info(format!("ordering a certificate for {} from {}: {why}", names.join(", "), config.certs.acme_directory))
        .await;
    let keeps = match &info {
        Some(i) => format!("{uri} keeps its certificate, valid until {}", i.not_after),
        None => format!("{uri} is served over http only until an order succeeds"),
    };
    let (chain, key) = match store.order(&names).await {
        Ok(issued) => issued,
        Err(e) => {
            log.error(format!("the certificate order failed: {e}; {keeps}; the renewal queue tries again")).await;
            return Ok(facts(info.as_ref(), Some(e)));
        }
    };
    let new_info = match certs::parse(chain.as_bytes()) {
        Ok(i) => i,
        Err(e) => {
            let e = format!("the ACME server sent a certificate that cannot be used: {e}");
            log.error(format!("{e}; {keeps}")).await;
            return Ok(facts(info.as_ref(), Some(e)));
        }
    };
    let installed = store.install(uri, &chain, &key, &new_info)?;
    drop(key);
    let enabled = !work.is_disabled();
    // The vhost naming the new certificate is tested with the rest of the config; refused,
    // the old vhost (and certificate) stays live.
    if let Err(e) = work.apply_vhost_with(enabled, Reload::Always, Some(&installed), log).await {
        store.discard(&installed);
        let e = format!("the web server refused the new certificate: {}", e.reason);
        log.error(format!("{e}; {keeps}")).await;
        return Ok(facts(info.as_ref(), Some(e)));
    }
    store.make_current(uri, &installed)?;
    log.success(format!(
        "{uri} is served over https (port {}) with a certificate from {} valid until {} (serial {})",
        config.certs.https_port, new_info.issuer, new_info.not_after, new_info.serial
    ))
    .await;
    Ok(facts(Some(&new_info), None))
}
