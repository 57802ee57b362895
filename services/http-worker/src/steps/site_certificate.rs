//! `site certificate`: a site with ssl gets a certificate for its uri and aliases over
//! ACME when it has none, when its certificate expires within the renewal window or
//! no longer covers its names, or when a renewal is asked for; the new certificate
//! goes live with the site's vhost (tested and reloaded with the others), and the old
//! one is removed only then. A failed order keeps the old certificate serving: the step
//! still succeeds, reporting the failure in its facts (the site shows it, and the
//! renewal queue tries again) and in the task log, never silently.
//!
//! A certificate supplied by the site's owner is checked again here (apache's config
//! test does not compare a key with its certificate), goes live the same way, and is
//! marked as supplied: later verifies never order an ACME one in its place, only warn
//! as it nears expiry, until a renewal is asked for (which switches the site to ACME).

use aegir_contract::certificate::check_supplied;
use aegir_contract::{CertificateFacts, CertificateSource, SiteContext, StepFacts, SuppliedCertificate};
use aegir_worker::{StepError, StepLog};
use chrono::Utc;

use crate::certs::{self, CertInfo, CertStore};
use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::site::SiteWork;

fn facts(info: Option<&CertInfo>, error: Option<String>, source: Option<CertificateSource>) -> StepFacts {
    StepFacts {
        certificate: Some(CertificateFacts {
            expires_at: info.map(|i| i.not_after),
            issuer: info.map(|i| i.issuer.clone()),
            serial: info.map(|i| i.serial.clone()),
            error,
            source: info.and(source),
        }),
        ..StepFacts::default()
    }
}

pub async fn run(
    config: &HttpConfig,
    site: &SiteContext,
    renew: bool,
    supplied: Option<&SuppliedCertificate>,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
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
    if let Some(supplied) = supplied {
        return install_supplied(config, &work, &store, supplied, log).await;
    }
    let current = store.current(uri);
    let source = current.as_ref().map(CertStore::source);
    let info = match current.as_ref().map(|c| certs::read(&c.cert)) {
        Some(Ok(info)) => Some(info),
        Some(Err(e)) => {
            log.warning(format!("the certificate of {uri} cannot be read ({e}); ordering a new one")).await;
            None
        }
        None => None,
    };
    let window = chrono::Duration::days(i64::from(config.certs.renew_days));
    if let (Some(CertificateSource::User), Some(i), false) = (source, &info, renew) {
        return Ok(keep_supplied(config, site, i, log).await);
    }
    let why = match &info {
        None => Some("it has no certificate yet".to_owned()),
        Some(_) if renew && source == Some(CertificateSource::User) => {
            Some("a renewal was asked for: the certificate its owner supplied is replaced by one from ACME".to_owned())
        }
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
        return Ok(facts(info.as_ref(), None, source));
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
            return Ok(facts(info.as_ref(), Some(e), source));
        }
    };
    let new_info = match certs::parse(chain.as_bytes()) {
        Ok(i) => i,
        Err(e) => {
            let e = format!("the ACME server sent a certificate that cannot be used: {e}");
            log.error(format!("{e}; {keeps}")).await;
            return Ok(facts(info.as_ref(), Some(e), source));
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
        return Ok(facts(info.as_ref(), Some(e), source));
    }
    store.make_current(uri, &installed)?;
    log.success(format!(
        "{uri} is served over https (port {}) with a certificate from {} valid until {} (serial {})",
        config.certs.https_port, new_info.issuer, new_info.not_after, new_info.serial
    ))
    .await;
    Ok(facts(Some(&new_info), None, Some(CertificateSource::Acme)))
}

/// A supplied certificate in use and no renewal asked for: never an ACME order, but a
/// warning when it nears expiry or no longer covers the site's names.
async fn keep_supplied(config: &HttpConfig, site: &SiteContext, info: &CertInfo, log: &StepLog) -> StepFacts {
    let uri = &site.uri;
    let window = chrono::Duration::days(i64::from(config.certs.renew_days));
    let replace = format!(
        "upload a new one (`aegir @{uri} certificate --cert FILE --key FILE`), or switch the site to ACME \
         (`aegir @{uri} verify --renew`)"
    );
    let uncovered: Vec<&str> = site
        .dns_names()
        .map(|n| n.as_str())
        .filter(|n| !info.names.iter().any(|c| c.eq_ignore_ascii_case(n) || wildcard_covers(c, n)))
        .collect();
    if info.not_after <= Utc::now() {
        log.error(format!("the certificate supplied for {uri} expired at {}; {replace}", info.not_after)).await;
    } else if info.not_after <= Utc::now() + window {
        log.warning(format!(
            "the certificate supplied for {uri} expires at {} (within {} days) and is not renewed by this system; \
             {replace}",
            info.not_after, config.certs.renew_days
        ))
        .await;
    } else {
        log.info(format!(
            "{uri} serves the certificate its owner supplied, valid until {} for {}; not ordered from ACME",
            info.not_after,
            info.names.join(", ")
        ))
        .await;
    }
    if !uncovered.is_empty() {
        log.warning(format!(
            "the certificate supplied for {uri} does not cover {} (the site's names changed); {replace}",
            uncovered.join(", ")
        ))
        .await;
    }
    facts(Some(info), None, Some(CertificateSource::User))
}

fn wildcard_covers(pattern: &str, name: &str) -> bool {
    pattern.strip_prefix("*.").is_some_and(|parent| {
        name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent))
    })
}

/// Puts a supplied certificate into service: checked, written (its key 0600), and made
/// current once a vhost naming it passed the config test. Refused, the site keeps the
/// certificate it had and the step fails with the reason.
async fn install_supplied(
    config: &HttpConfig,
    work: &SiteWork<'_>,
    store: &CertStore<'_>,
    supplied: &SuppliedCertificate,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let site = work.site;
    let uri = site.uri.as_str();
    let keeps = match store.current(uri) {
        Some(_) => format!("{uri} keeps the certificate it has"),
        None => format!("{uri} stays served over http only"),
    };
    let names: Vec<&str> = site.dns_names().map(|n| n.as_str()).collect();
    let summary = check_supplied(&supplied.chain, supplied.key.expose(), &names, Utc::now()).map_err(|e| {
        StepError::permanent(format!("the certificate supplied for {uri} cannot be used: {e}; {keeps}"))
    })?;
    let info =
        CertInfo { not_after: summary.not_after, serial: summary.serial, issuer: summary.issuer, names: summary.names };
    log.info(format!(
        "installing the certificate supplied for {uri}: issued by {} for {}, valid until {} (serial {})",
        info.issuer,
        info.names.join(", "),
        info.not_after,
        info.serial
    ))
    .await;
    let live = store.current(uri);
    let installed = store.install(uri, &supplied.chain, supplied.key.expose(), &info)?;
    store.mark_supplied(&installed)?;
    let enabled = !work.is_disabled();
    if let Err(e) = work.apply_vhost_with(enabled, Reload::Always, Some(&installed), log).await {
        // The same certificate uploaded again shares the live one's directory: kept.
        if live.as_ref().is_none_or(|l| l.dir != installed.dir) {
            store.discard(&installed);
        }
        return Err(StepError::permanent(format!(
            "the web server refused the certificate supplied for {uri}: {}; {keeps}",
            e.reason
        )));
    }
    store.make_current(uri, &installed)?;
    log.success(format!(
        "{uri} is served over https (port {}) with the certificate its owner supplied, valid until {}; it is not \
         renewed over ACME: upload a new one before then",
        config.certs.https_port, info.not_after
    ))
    .await;
    Ok(facts(Some(&info), None, Some(CertificateSource::User)))
}
