//! `platform import`: finds the sites already on a platform (made outside the system,
//! or whose records were lost) and reports them; task-api creates their records.
//! Reads only: nothing on disk changes.

use std::path::PathBuf;

use aegir_contract::{PlatformContext, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::config::HttpConfig;
use crate::platforms::{self, found};
use crate::webserver::WebServer;

pub async fn run(config: &HttpConfig, platform: &PlatformContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let root = &platform.root;
    config.check_platform_root(root)?;
    let root_path = PathBuf::from(root.as_str());
    if !tokio::fs::symlink_metadata(&root_path).await.is_ok_and(|m| m.is_dir()) {
        return Err(StepError::permanent(format!(
            "platform root {root} is not a directory on {}; put the code base there and verify the platform",
            platform.web_server.name
        )));
    }
    let http = platform.web_server.http.as_ref().ok_or_else(|| {
        StepError::permanent(format!(
            "{} has no http service; save it with --http_service_type",
            platform.web_server.name
        ))
    })?;
    let vhost_dir = WebServer::new(http.service_type, config).vhost_dir();
    let scan_root = root_path.clone();
    let (detected, scan) = tokio::task::spawn_blocking(move || {
        let detected = platforms::detect(&scan_root);
        let scan = detected.as_ref().map(|d| found::scan(&scan_root, d.platform_type, &vhost_dir));
        (detected, scan)
    })
    .await
    .map_err(|e| StepError::permanent(format!("the site scan crashed: {e}")))?;
    let (Some(detected), Some(scan)) = (detected, scan) else {
        return Err(StepError::permanent(format!(
            "no PHP application found in {root}: expected Drupal, WordPress, MediaWiki or at least an index.php"
        )));
    };
    log.info(format!(
        "looking for sites of a {} platform in {root}/sites/*/{}",
        detected.platform_type,
        found::settings_file(detected.platform_type)
    ))
    .await;
    for reason in &scan.skipped {
        log.warning(format!("skipped: {reason}")).await;
    }
    for site in &scan.found {
        let aliases = if site.aliases.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = site.aliases.iter().map(|a| a.as_str()).collect();
            format!(", aliases {}", names.join(" "))
        };
        let database = match &site.database {
            Some(db) => format!(
                "database `{}` (user `{}`{})",
                db.name,
                db.user,
                db.host.as_ref().map_or(String::new(), |h| format!(" on {h}"))
            ),
            None => "no database account found".into(),
        };
        log.info(format!("found {}: {database}{aliases}", site.uri)).await;
    }
    log.info(format!("found {} site(s) on {}", scan.found.len(), platform.name)).await;
    Ok(StepFacts {
        platform_type: Some(detected.platform_type),
        app_version: detected.version,
        sites: Some(scan.found),
        ..Default::default()
    })
}
