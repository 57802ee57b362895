//! Command line and environment of task-api.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use aegir_config::{CommonArgs, DatabaseArgs, SigningKeyArgs};
use aegir_contract::{AbsolutePath, NameError};

/// Every setting of task-api; each option can also come from its `AEGIR_*` variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "task-api", about = "The REST API of Aegir: contexts, tasks and live task logs")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub signing: SigningKeyArgs,

    /// Address the HTTP API listens on.
    #[arg(long, env = "AEGIR_API_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,

    /// Directories platforms may live in, separated by `:`. A platform's root must lie
    /// below one of them.
    #[arg(long, env = "AEGIR_PLATFORM_ROOTS", default_value = "/var/aegir/platforms")]
    pub platform_roots: PlatformRoots,

    /// Seconds between runs of each enabled site's cron, unless the site sets its own;
    /// 0 turns the cron queue off.
    #[arg(long, env = "AEGIR_CRON_INTERVAL_SECS", default_value_t = 3600)]
    pub cron_interval_secs: u64,

    /// Seconds between measurements of each enabled site's figures (sizes, HTTP health,
    /// the application's counts); 0 turns the stats queue off.
    #[arg(long, env = "AEGIR_STATS_INTERVAL_SECS", default_value_t = 3600)]
    pub stats_interval_secs: u64,

    /// Seconds between scheduled backups of each enabled site; 0 turns them off.
    #[arg(long, env = "AEGIR_BACKUP_INTERVAL_SECS", default_value_t = 86_400)]
    pub backup_interval_secs: u64,

    /// Archives kept per site: the newest of each of this many most recent days that
    /// have one. With `AEGIR_BACKUP_KEEP_WEEKLY`; both 0 keep every archive.
    #[arg(long, env = "AEGIR_BACKUP_KEEP_DAILY", default_value_t = 7)]
    pub backup_keep_daily: usize,

    /// Archives kept per site: the newest of each of this many most recent ISO weeks
    /// that have one.
    #[arg(long, env = "AEGIR_BACKUP_KEEP_WEEKLY", default_value_t = 4)]
    pub backup_keep_weekly: usize,

    /// Seconds between looks for sites whose certificate is due for renewal (or whose
    /// last order failed and waited its backoff); 0 turns the renewal queue off.
    #[arg(long, env = "AEGIR_CERT_INTERVAL_SECS", default_value_t = 3600)]
    pub cert_interval_secs: u64,

    /// Certificates expiring within this many days are renewed.
    #[arg(long, env = "AEGIR_CERT_RENEW_DAYS", default_value_t = 30)]
    pub cert_renew_days: u64,

    /// Seconds before a failed certificate order is tried again, doubled for each
    /// failure in a row (at most a day).
    #[arg(long, env = "AEGIR_CERT_RETRY_SECS", default_value_t = 600)]
    pub cert_retry_secs: u64,

    /// Days finished tasks and their logs are kept; 0 keeps them forever.
    #[arg(long, env = "AEGIR_TASK_RETENTION_DAYS", default_value_t = 90)]
    pub task_retention_days: u32,

    /// When this file does not exist at start, user `admin` is made (if missing) with a
    /// new API token written here, mode 0600. An existing file is left alone.
    #[arg(long, env = "AEGIR_BOOTSTRAP_ADMIN_TOKEN_FILE")]
    pub bootstrap_admin_token_file: Option<std::path::PathBuf>,

    /// Take the audit log's remote address from the last `X-Forwarded-For` entry: only
    /// behind a reverse proxy that sets it, since anyone else can write that header.
    #[arg(long, env = "AEGIR_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
}

impl Config {
    /// The retention of archives; `None` keeps every archive.
    pub fn retention(&self) -> Option<crate::backup_queue::Retention> {
        (self.backup_keep_daily > 0 || self.backup_keep_weekly > 0).then_some(crate::backup_queue::Retention {
            daily: self.backup_keep_daily,
            weekly: self.backup_keep_weekly,
        })
    }
}

/// The directories platform roots must lie below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformRoots(Vec<AbsolutePath>);

impl PlatformRoots {
    pub fn new(roots: Vec<AbsolutePath>) -> Self {
        Self(roots)
    }

    /// The allowed directory `path` lies strictly below, if any: a platform root is never
    /// one of these directories itself.
    pub fn containing(&self, path: &AbsolutePath) -> Option<&AbsolutePath> {
        self.0.iter().find(|root| path != *root && path.is_within(root))
    }
}

impl FromStr for PlatformRoots {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let roots = s.split(':').filter(|r| !r.is_empty()).map(AbsolutePath::parse).collect::<Result<Vec<_>, _>>()?;
        if roots.is_empty() {
            return Err(NameError {
                kind: "platform roots",
                value: s.to_owned(),
                rule: "give at least one absolute directory, several separated by `:`",
            });
        }
        Ok(Self(roots))
    }
}

impl fmt::Display for PlatformRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, root) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            f.write_str(root.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_colon_separated_absolute_paths() {
        let roots: PlatformRoots = "/var/aegir/platforms:/srv/www".parse().unwrap();
        assert_eq!(roots.to_string(), "/var/aegir/platforms:/srv/www");
        let inside = AbsolutePath::parse("/srv/www/wp").unwrap();
        assert_eq!(roots.containing(&inside).map(AbsolutePath::as_str), Some("/srv/www"));
        assert!(roots.containing(&AbsolutePath::parse("/srv/www").unwrap()).is_none());
        assert!(roots.containing(&AbsolutePath::parse("/srv/wwwx/a").unwrap()).is_none());
        assert!("relative/path".parse::<PlatformRoots>().is_err());
        assert!("".parse::<PlatformRoots>().is_err());
    }
}
