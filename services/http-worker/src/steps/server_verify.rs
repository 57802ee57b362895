//! `server verify`, web part: the web server is installed, our config directory is
//! writable, our base config is in place and included, the config tests clean, and
//! the server reloads.

use aegir_contract::{HttpServiceType, PhpVersion, ServerContext, StepFacts};
use aegir_worker::command;
use aegir_worker::{StepError, StepLog};
use std::time::Duration;

use crate::config::HttpConfig;
use crate::permissions;
use crate::webserver::WebServer;

pub async fn run(config: &HttpConfig, server: &ServerContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let http = server.http.as_ref().ok_or_else(|| {
        StepError::permanent(format!("{} has no http service; save it with --http_service_type", server.name))
    })?;
    let web = WebServer::new(http.service_type, config);

    let version = web.version().await?;
    log.info(format!("{} is installed: {version}", http.service_type)).await;

    if permissions::group_id(&config.web_group).is_none() {
        return Err(StepError::permanent(format!(
            "the web server group `{}` does not exist on this server; set AEGIR_WEB_GROUP to the group {} runs as",
            config.web_group, http.service_type
        )));
    }

    let vhost_dir = web.vhost_dir();
    tokio::fs::create_dir_all(&vhost_dir)
        .await
        .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", vhost_dir.display())))?;
    let probe = config.config_dir.join(format!(".verify-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&probe, b"probe").await.map_err(|e| {
        StepError::permanent(format!("the config directory {} is not writable: {e}", config.config_dir.display()))
    })?;
    let _ = tokio::fs::remove_file(&probe).await;
    log.info(format!("config directory {} is writable", config.config_dir.display())).await;

    let base = web.base_config_path();
    {
        // No reload may load the base config half written or untested.
        let _config = web.exclusive().await;
        write_atomically(&base, web.base_config(server.name.as_str(), http.port, true).as_bytes()).await?;
        log.info(format!("wrote the base config {}", base.display())).await;
        match web.config_test().await {
            Ok(()) => {}
            // The main config sizes the server name hash itself: it keeps its own.
            Err(e) if http.service_type == HttpServiceType::Nginx && names_hash_is_set(&e.reason) => {
                log.warning(
                    "the main nginx config sets server_names_hash_max_size or server_names_hash_bucket_size; \
                     keeping its values (with thousands of sites, raise them to 131072 and 128)",
                )
                .await;
                write_atomically(&base, web.base_config(server.name.as_str(), http.port, false).as_bytes()).await?;
                web.config_test().await?;
            }
            Err(e) => return Err(e),
        }
        log.info(format!("{} config test passed", http.service_type)).await;
    }

    if !web.includes(&base).await? {
        return Err(StepError::permanent(format!(
            "{} does not include {}; add `include {};` to its main config so sites are served",
            http.service_type,
            base.display(),
            base.display()
        )));
    }
    log.info(format!("{} includes {}", http.service_type, base.display())).await;

    if http.service_type == HttpServiceType::Apache {
        https_module(&web, log).await?;
    }

    web.reload().await?;
    log.info(format!("{} reloaded", http.service_type)).await;
    let (php_versions, php_default_version) = php_versions(config, log).await;
    Ok(StepFacts {
        service_version: Some(version),
        php_versions: Some(php_versions),
        php_default_version,
        ..Default::default()
    })
}

/// Apache serves sites with ssl over https through mod_ssl: enabled with `a2enmod ssl`
/// where the distribution's config is used (the reload after loads it); with a main
/// config of its own, its owner loads it, and a missing one is said.
async fn https_module(web: &WebServer, log: &StepLog) -> Result<(), StepError> {
    if web.has_module("ssl_module").await? {
        log.info("apache loads mod_ssl: sites with ssl are served over https").await;
        return Ok(());
    }
    if !web.distribution_config() {
        log.warning(
            "apache does not load mod_ssl (ssl_module): sites with ssl stay on http until its main config loads it \
             (LoadModule ssl_module …/mod_ssl.so)",
        )
        .await;
        return Ok(());
    }
    match command::run("a2enmod", ["-q", "ssl"], Duration::from_secs(60)).await {
        Ok(out) if out.success => {
            web.config_test().await?;
            log.info("enabled mod_ssl (a2enmod ssl): sites with ssl are served over https").await;
        }
        Ok(out) => {
            log.warning(format!(
                "a2enmod ssl failed; sites with ssl stay on http until mod_ssl is enabled: {}",
                out.text()
            ))
            .await;
        }
        Err(e) => {
            log.warning(format!("cannot run a2enmod ssl ({e}); sites with ssl stay on http until mod_ssl is enabled"))
                .await;
        }
    }
    Ok(())
}

/// The PHP versions whose php-fpm is installed (a versioned binary with its config), and
/// the one sites without their own run. With a pool per site, says which masters run.
async fn php_versions(config: &HttpConfig, log: &StepLog) -> (Vec<PhpVersion>, Option<PhpVersion>) {
    let pools = &config.pools;
    let installed = pools.installed();
    let default = pools.default_among(&installed);
    if installed.is_empty() {
        log.warning(format!(
            "no php-fpm is installed ({}/php-fpm<version> with its config); sites cannot run PHP until one is",
            pools.bin_dir.display()
        ))
        .await;
        return (installed, default);
    }
    let list: Vec<&str> = installed.iter().map(PhpVersion::as_str).collect();
    let default_text = default.as_ref().map_or("none".to_owned(), |v| v.to_string());
    log.info(format!("PHP versions installed: {}; sites without their own run {default_text}", list.join(", "))).await;
    if let Some(wanted) = pools.default_version.as_ref().filter(|v| !installed.contains(v)) {
        log.warning(format!("the default PHP version {wanted} (AEGIR_PHP_DEFAULT_VERSION) is not installed")).await;
    }
    if let Some(socket) = &config.php_fpm_socket {
        log.info(format!("every site's PHP goes to one php-fpm at {}", socket.display())).await;
        return (installed, default);
    }
    for version in &installed {
        let pid_file = pools.pid_file(version);
        let pool_dir = pools.pool_dir(version);
        if !pool_dir.is_dir() {
            log.warning(format!(
                "php-fpm {version} has no pool directory {}; sites on PHP {version} cannot get their pools",
                pool_dir.display()
            ))
            .await;
        } else if !pid_file.is_file() {
            log.warning(format!(
                "php-fpm {version} is not running (no {}); start it before sites use PHP {version}",
                pid_file.display()
            ))
            .await;
        } else {
            log.info(format!("php-fpm {version} runs; site pools go to {}", pool_dir.display())).await;
        }
    }
    (installed, default)
}

/// Whether nginx refused our server name hash settings because the main config has them.
fn names_hash_is_set(reason: &str) -> bool {
    reason.contains("server_names_hash_") && reason.contains("is duplicate")
}

/// Writes a file through a temporary sibling and a rename, so readers (and a crash)
/// never see half a file.
pub async fn write_atomically(path: &std::path::Path, contents: &[u8]) -> Result<(), StepError> {
    let tmp = crate::files::temp_sibling(path);
    let fail = |e: std::io::Error| StepError::permanent(format!("cannot write {}: {e}", path.display()));
    tokio::fs::write(&tmp, contents).await.map_err(fail)?;
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(fail(e));
    }
    Ok(())
}
