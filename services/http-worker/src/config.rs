//! What this worker knows about its own machine: where its web server config lives,
//! which directories platforms may be in, and the users files belong to.

use std::path::PathBuf;

use aegir_contract::{AbsolutePath, ServerName};
use anyhow::Context;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Directory of this server's web server config (vhosts and base config).
    /// Default: /var/aegir/config/<server>.
    #[arg(long, env = "AEGIR_HTTP_CONFIG_DIR")]
    pub http_config_dir: Option<PathBuf>,

    /// Main nginx.conf to test and reload (`nginx -c`); default: nginx's own.
    #[arg(long, env = "AEGIR_NGINX_CONF")]
    pub nginx_conf: Option<PathBuf>,

    /// Main apache config to test and reload (`apache2ctl -f`); default: apache's own.
    #[arg(long, env = "AEGIR_APACHE_CONF")]
    pub apache_conf: Option<PathBuf>,

    /// Directories platforms may live in, separated by `:`.
    #[arg(long, env = "AEGIR_PLATFORM_ROOTS", default_value = "/var/aegir/platforms")]
    pub platform_roots: String,

    /// Group the web server runs as.
    #[arg(long, env = "AEGIR_WEB_GROUP", default_value = "www-data")]
    pub web_group: String,

    /// User that owns platform code (Aegir's `aegir` user).
    #[arg(long, env = "AEGIR_SCRIPT_USER", default_value = "aegir")]
    pub script_user: String,

    /// php-fpm socket the vhosts pass PHP requests to; default: the first
    /// `/run/php/php*-fpm.sock` found.
    #[arg(long, env = "AEGIR_PHP_FPM_SOCKET")]
    pub php_fpm_socket: Option<PathBuf>,

    /// PHP command-line interpreter that runs the applications' installers and tools.
    #[arg(long, env = "AEGIR_PHP", default_value = "php")]
    pub php: String,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub config_dir: PathBuf,
    pub nginx_conf: Option<PathBuf>,
    pub apache_conf: Option<PathBuf>,
    pub platform_roots: Vec<AbsolutePath>,
    pub web_group: String,
    pub script_user: String,
    pub php_fpm_socket: Option<PathBuf>,
    pub php: String,
    /// Steps this worker runs at once (`AEGIR_PREFETCH`).
    pub steps_at_once: usize,
}

impl HttpArgs {
    pub fn resolve(self, server: &ServerName, steps_at_once: usize) -> anyhow::Result<HttpConfig> {
        let platform_roots = self
            .platform_roots
            .split(':')
            .filter(|s| !s.is_empty())
            .map(|s| AbsolutePath::parse(s).with_context(|| "in AEGIR_PLATFORM_ROOTS"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(HttpConfig {
            config_dir: self
                .http_config_dir
                .unwrap_or_else(|| PathBuf::from("/var/aegir/config").join(server.as_str())),
            nginx_conf: self.nginx_conf,
            apache_conf: self.apache_conf,
            platform_roots,
            web_group: self.web_group,
            script_user: self.script_user,
            php_fpm_socket: self.php_fpm_socket,
            php: self.php,
            steps_at_once,
        })
    }
}

impl HttpConfig {
    /// Refuses a platform root outside the directories platforms may live in.
    pub fn check_platform_root(&self, root: &AbsolutePath) -> Result<(), aegir_worker::StepError> {
        if self.platform_roots.iter().any(|allowed| root.is_within(allowed)) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.platform_roots.iter().map(|r| r.as_str()).collect();
        Err(aegir_worker::StepError::permanent(format!(
            "platform root {root} is outside the directories platforms may live in on this server ({})",
            allowed.join(", ")
        )))
    }

    /// The php-fpm socket to use: the configured one, else the first one found.
    pub fn php_fpm_socket(&self) -> Option<PathBuf> {
        if let Some(socket) = &self.php_fpm_socket {
            return Some(socket.clone());
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/run/php")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php") && n.ends_with("-fpm.sock"))
            })
            .collect();
        found.sort();
        found.into_iter().next()
    }
}
