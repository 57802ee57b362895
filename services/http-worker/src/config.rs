//! What this worker knows about its own machine: where its web server config lives,
//! which directories platforms may be in, and the users files belong to.

use std::path::PathBuf;

use aegir_contract::{AbsolutePath, PhpVersion, ServerName, SiteContext};
use anyhow::Context;
use clap::Args;

use crate::fpm::PoolSettings;

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

    /// One php-fpm socket every site's PHP requests go to, instead of a pool per site.
    #[arg(long, env = "AEGIR_PHP_FPM_SOCKET")]
    pub php_fpm_socket: Option<PathBuf>,

    /// Directory of the versioned php-fpm binaries (`php-fpm8.2`): each one with its
    /// config is a PHP version sites may run.
    #[arg(long, env = "AEGIR_PHP_FPM_BIN_DIR", default_value = "/usr/sbin")]
    pub php_fpm_bin_dir: PathBuf,

    /// Main config of each version's php-fpm master (`{version}` is the version), tested
    /// after every pool change.
    #[arg(long, env = "AEGIR_PHP_FPM_CONF", default_value = "/etc/php/{version}/fpm/php-fpm.conf")]
    pub php_fpm_conf: String,

    /// Directory each version's master includes pools from; the sites' pools go there.
    #[arg(long, env = "AEGIR_PHP_FPM_POOL_DIR", default_value = "/etc/php/{version}/fpm/pool.d")]
    pub php_fpm_pool_dir: String,

    /// Pid file of each version's master, which a pool change reloads (SIGUSR2).
    #[arg(long, env = "AEGIR_PHP_FPM_PID", default_value = "/run/php/php{version}-fpm.pid")]
    pub php_fpm_pid: String,

    /// Directory of the sites' pool sockets.
    #[arg(long, env = "AEGIR_PHP_FPM_RUN_DIR", default_value = "/run/aegir/php-fpm")]
    pub php_fpm_run_dir: PathBuf,

    /// Directory of each site's own temporary directory (uploads, sessions).
    #[arg(long, env = "AEGIR_PHP_TMP_DIR", default_value = "/var/aegir/php-tmp")]
    pub php_tmp_dir: PathBuf,

    /// PHP version of sites without one of their own; default: the newest installed.
    #[arg(long, env = "AEGIR_PHP_DEFAULT_VERSION")]
    pub php_default_version: Option<PhpVersion>,

    /// PHP command-line interpreter that runs the applications' installers and tools.
    #[arg(long, env = "AEGIR_PHP", default_value = "php")]
    pub php: String,

    /// Directory of the sites' certificates and keys (keys 0600), the ACME account and
    /// the challenge answers. Default: <AEGIR_HTTP_CONFIG_DIR>/ssl.
    #[arg(long, env = "AEGIR_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,

    /// The port sites with ssl are served on over https.
    #[arg(long, env = "AEGIR_HTTPS_PORT", default_value_t = 443)]
    pub https_port: u16,

    /// The ACME directory certificates are ordered from.
    #[arg(long, env = "AEGIR_ACME_DIRECTORY", default_value = "https://acme-v02.api.letsencrypt.org/directory")]
    pub acme_directory: String,

    /// A PEM root certificate to trust for the ACME server's own https (a test CA such
    /// as pebble's); default: the system's roots.
    #[arg(long, env = "AEGIR_ACME_CA_FILE")]
    pub acme_ca_file: Option<PathBuf>,

    /// Contact e-mail address of the ACME account, told of expiring certificates.
    #[arg(long, env = "AEGIR_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// A certificate expiring within this many days is renewed.
    #[arg(long, env = "AEGIR_CERT_RENEW_DAYS", default_value_t = 30)]
    pub cert_renew_days: u32,
}

/// Where certificates come from and where they are kept.
#[derive(Debug, Clone)]
pub struct CertConfig {
    pub dir: PathBuf,
    pub https_port: u16,
    pub acme_directory: String,
    pub acme_ca_file: Option<PathBuf>,
    pub acme_email: Option<String>,
    pub renew_days: u32,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub config_dir: PathBuf,
    pub nginx_conf: Option<PathBuf>,
    pub apache_conf: Option<PathBuf>,
    pub platform_roots: Vec<AbsolutePath>,
    pub web_group: String,
    pub script_user: String,
    /// One socket for every site (`AEGIR_PHP_FPM_SOCKET`); `None`: a pool per site.
    pub php_fpm_socket: Option<PathBuf>,
    pub pools: PoolSettings,
    pub php: String,
    /// Steps this worker runs at once (`AEGIR_PREFETCH`).
    pub steps_at_once: usize,
    pub certs: CertConfig,
}

impl HttpArgs {
    pub fn resolve(self, server: &ServerName, steps_at_once: usize) -> anyhow::Result<HttpConfig> {
        let platform_roots = self
            .platform_roots
            .split(':')
            .filter(|s| !s.is_empty())
            .map(|s| AbsolutePath::parse(s).with_context(|| "in AEGIR_PLATFORM_ROOTS"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let config_dir =
            self.http_config_dir.unwrap_or_else(|| PathBuf::from("/var/aegir/config").join(server.as_str()));
        Ok(HttpConfig {
            certs: CertConfig {
                dir: self.cert_dir.unwrap_or_else(|| config_dir.join("ssl")),
                https_port: self.https_port,
                acme_directory: self.acme_directory,
                acme_ca_file: self.acme_ca_file,
                acme_email: self.acme_email,
                renew_days: self.cert_renew_days,
            },
            config_dir,
            nginx_conf: self.nginx_conf,
            apache_conf: self.apache_conf,
            platform_roots,
            web_group: self.web_group,
            script_user: self.script_user,
            php_fpm_socket: self.php_fpm_socket,
            pools: PoolSettings {
                bin_dir: self.php_fpm_bin_dir,
                conf: self.php_fpm_conf,
                pool_dir: self.php_fpm_pool_dir,
                pid_file: self.php_fpm_pid,
                run_dir: self.php_fpm_run_dir,
                tmp_dir: self.php_tmp_dir,
                default_version: self.php_default_version,
            },
            php: self.php,
            steps_at_once,
        })
    }
}

impl HttpConfig {
    /// The PHP command-line interpreter for a site's installer and tools: with a pool per
    /// site and the default `php`, the one of the site's own version (`php8.2`) when it is
    /// installed, so they run on the PHP the site's pages run on.
    pub fn php_cli(&self, site: &SiteContext) -> String {
        if self.php_fpm_socket.is_some() || self.php != "php" {
            return self.php.clone();
        }
        let Ok(version) = self.pools.version_for(site.php_version.as_ref()) else { return self.php.clone() };
        let versioned = format!("php{version}");
        let installed = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(&versioned).is_file()));
        if installed { versioned } else { self.php.clone() }
    }

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
}
