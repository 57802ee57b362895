//! A php-fpm pool per site: each site's PHP runs in a pool of its own, as a system user of
//! its own, with `open_basedir` limited to its platform, its files and a temporary
//! directory of its own, on the PHP version chosen for it among those installed. One
//! master per version (Debian's `php<version>-fpm`) serves the pools of its version. A
//! pool change is tested with that master's whole config first, then loaded with a
//! graceful reload; a pool that fails the test is taken back out, so the other sites of
//! the master keep working.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aegir_contract::{PhpVersion, SiteUri};
use aegir_worker::StepError;
use aegir_worker::command::{self, CommandError};

use crate::files::{self, Ownership};
use crate::platforms::WRITTEN_BY;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Where each installed version's php-fpm and its pools are.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Directory of the versioned binaries, `php-fpm8.2`.
    pub bin_dir: PathBuf,
    /// Each version's main config; `{version}` stands for the version.
    pub conf: String,
    /// The directory each version's master includes pools from.
    pub pool_dir: String,
    /// Each version's master's pid file.
    pub pid_file: String,
    /// Directory of the pools' sockets.
    pub run_dir: PathBuf,
    /// Directory of the sites' own temporary directories.
    pub tmp_dir: PathBuf,
    /// The version of sites without one of their own; default: the newest installed.
    pub default_version: Option<PhpVersion>,
}

fn at(template: &str, version: &PhpVersion) -> PathBuf {
    PathBuf::from(template.replace("{version}", version.as_str()))
}

/// `8.10` sorts after `8.9`.
fn numeric(version: &PhpVersion) -> (u32, u32) {
    let (major, minor) = version.as_str().split_once('.').unwrap_or((version.as_str(), "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

impl PoolSettings {
    pub fn binary(&self, version: &PhpVersion) -> PathBuf {
        self.bin_dir.join(format!("php-fpm{version}"))
    }

    pub fn conf(&self, version: &PhpVersion) -> PathBuf {
        at(&self.conf, version)
    }

    pub fn pool_dir(&self, version: &PhpVersion) -> PathBuf {
        at(&self.pool_dir, version)
    }

    pub fn pid_file(&self, version: &PhpVersion) -> PathBuf {
        at(&self.pid_file, version)
    }

    /// The versions installed: a `php-fpm<version>` binary with its main config, oldest first.
    pub fn installed(&self) -> Vec<PhpVersion> {
        let Ok(entries) = std::fs::read_dir(&self.bin_dir) else { return Vec::new() };
        let mut versions: Vec<PhpVersion> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("php-fpm")).map(str::to_owned))
            .filter_map(|v| PhpVersion::parse(&v).ok())
            .filter(|v| self.conf(v).is_file())
            .collect();
        versions.sort_by_key(numeric);
        versions.dedup();
        versions
    }

    /// The version of sites without one of their own, among `installed`.
    pub fn default_among(&self, installed: &[PhpVersion]) -> Option<PhpVersion> {
        match &self.default_version {
            Some(v) if installed.contains(v) => Some(v.clone()),
            Some(_) => None,
            None => installed.last().cloned(),
        }
    }

    /// The version a site runs: its own, else the default; it must be installed.
    pub fn version_for(&self, wanted: Option<&PhpVersion>) -> Result<PhpVersion, StepError> {
        let installed = self.installed();
        let list = || {
            if installed.is_empty() {
                "none".to_owned()
            } else {
                installed.iter().map(PhpVersion::as_str).collect::<Vec<_>>().join(", ")
            }
        };
        match wanted {
            Some(v) if installed.contains(v) => Ok(v.clone()),
            Some(v) => Err(StepError::permanent(format!(
                "PHP {v} is not installed on this server (no {} with {}; installed: {}); install the php{v}-fpm \
                 package and verify the server, or give the site one of the installed versions",
                self.binary(v).display(),
                self.conf(v).display(),
                list()
            ))),
            None => self.default_among(&installed).ok_or_else(|| match &self.default_version {
                Some(v) => StepError::permanent(format!(
                    "the default PHP version {v} (AEGIR_PHP_DEFAULT_VERSION) is not installed on this server \
                     (installed: {}); install php{v}-fpm or change the setting",
                    list()
                )),
                None => StepError::permanent(format!(
                    "no php-fpm is installed on this server (no {}/php-fpm<version> with its config); install a \
                     php<version>-fpm package",
                    self.bin_dir.display()
                )),
            }),
        }
    }

    pub fn socket(&self, user: &str, version: &PhpVersion) -> PathBuf {
        self.run_dir.join(format!("{user}.php{version}.sock"))
    }

    pub fn pool_file(&self, user: &str, version: &PhpVersion) -> PathBuf {
        self.pool_dir(version).join(format!("aegir-{user}.conf"))
    }

    pub fn site_tmp(&self, user: &str) -> PathBuf {
        self.tmp_dir.join(user)
    }
}

/// The system user a site's PHP runs as: `site-<start of the uri>-<hash of the uri>`,
/// at most 32 characters as `useradd` wants, the same for the same uri on every run.
pub fn site_user(uri: &SiteUri) -> String {
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let hash =
        uri.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let slug: String = uri
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(18)
        .collect();
    format!("site-{}-{:08x}", slug.trim_end_matches('-'), hash as u32)
}

/// What a site's pool is made of.
pub struct Pool<'a> {
    pub uri: &'a SiteUri,
    pub user: &'a str,
    pub web_group: &'a str,
    pub socket: &'a Path,
    /// The platform's root: its code and the site's directory within it.
    pub root: &'a Path,
    pub files_dir: &'a Path,
    pub tmp: &'a Path,
}

/// A path that can go into the pool file: no characters php-fpm's ini syntax would read
/// as something else, and none that `open_basedir` uses as its separator.
fn check_path(what: &str, path: &Path) -> Result<String, StepError> {
    let text = path.display().to_string();
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "._~+=/@%,-".contains(c)) {
        Ok(text)
    } else {
        Err(StepError::permanent(format!(
            "{what} {text} holds characters a php-fpm pool cannot carry safely; use letters, digits and ._~+=/@%,- only"
        )))
    }
}

pub fn render(pool: &Pool) -> Result<String, StepError> {
    let root = check_path("the platform root", pool.root)?;
    let files = check_path("the files directory", pool.files_dir)?;
    let tmp = check_path("the temporary directory", pool.tmp)?;
    let socket = check_path("the socket", pool.socket)?;
    let (user, group, uri) = (pool.user, pool.web_group, pool.uri);
    Ok(format!(
        "; {WRITTEN_BY}: the php-fpm pool of {uri}. Changes here are overwritten.\n\
         [{user}]\n\
         user = {user}\n\
         group = {user}\n\
         listen = {socket}\n\
         listen.owner = {user}\n\
         listen.group = {group}\n\
         listen.mode = 0660\n\
         pm = ondemand\n\
         pm.max_children = 8\n\
         pm.process_idle_timeout = 30s\n\
         chdir = {root}\n\
         security.limit_extensions = .php\n\
         env[TMPDIR] = {tmp}\n\
         ; PHP reads and writes only the platform, the site's files and its own temporary directory.\n\
         php_admin_value[open_basedir] = {root}/:{files}/:{tmp}/\n\
         php_admin_value[upload_tmp_dir] = {tmp}\n\
         php_admin_value[sys_temp_dir] = {tmp}\n\
         php_admin_value[session.save_path] = {tmp}\n"
    ))
}

/// Serialises the changes to one master's pools: each is tested and loaded before the next.
static MASTERS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);

fn master_lock(conf: &Path) -> Arc<tokio::sync::Mutex<()>> {
    MASTERS.lock().expect("php-fpm master locks").entry(conf.to_path_buf()).or_default().clone()
}

/// What a pool change came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// Written, tested and loaded by a reload of its master.
    Reloaded,
}

impl PoolSettings {
    async fn config_test(&self, version: &PhpVersion) -> Result<(), StepError> {
        let binary = self.binary(version).display().to_string();
        let conf = self.conf(version);
        let out = command::run(
            &binary,
            [std::ffi::OsStr::new("-t"), "--fpm-config".as_ref(), conf.as_os_str()],
            TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            CommandError::NotFound { .. } => StepError::permanent(format!(
                "php-fpm {version} is not installed on this server ({binary} not found); install php{version}-fpm"
            )),
            other => StepError::transient(other.to_string()),
        })?;
        if out.success {
            Ok(())
        } else {
            Err(StepError::permanent(format!("php-fpm {version} config test failed:\n{}", out.text())))
        }
    }

    /// The running master's pid and its pid file's identity (a reload writes it anew).
    fn master(&self, version: &PhpVersion) -> Result<(nix::unistd::Pid, (u64, i64, i64)), StepError> {
        let path = self.pid_file(version);
        let not_running = |why: String| {
            StepError::permanent(format!(
                "php-fpm {version} is not running ({why}); start it (`systemctl start php{version}-fpm`) and run \
                 the task again"
            ))
        };
        let meta = std::fs::metadata(&path).map_err(|e| not_running(format!("no pid file {}: {e}", path.display())))?;
        let text = std::fs::read_to_string(&path).map_err(|e| not_running(format!("{}: {e}", path.display())))?;
        let pid: i32 =
            text.trim().parse().map_err(|_| not_running(format!("{} holds no process id", path.display())))?;
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, None).map_err(|_| not_running(format!("no process {pid}")))?;
        Ok((pid, (meta.ino(), meta.mtime(), meta.mtime_nsec())))
    }

    /// Reloads the master gracefully (SIGUSR2) and returns once it runs the new config:
    /// the master writes its pid file anew once it has read it.
    async fn reload(&self, version: &PhpVersion) -> Result<(), StepError> {
        let (pid, before) = self.master(version)?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).map_err(|e| {
            StepError::transient(format!("cannot signal php-fpm {version} (process {pid}) to reload: {e}"))
        })?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let path = self.pid_file(version);
        loop {
            if let Ok(meta) = std::fs::metadata(&path)
                && (meta.ino(), meta.mtime(), meta.mtime_nsec()) != before
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StepError::transient(format!(
                    "php-fpm {version} did not come back within {} s of its reload; see its log",
                    TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the pool's socket takes connections.
    async fn wait_socket(&self, version: &PhpVersion, socket: &Path) -> Result<(), StepError> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StepError::transient(format!(
                    "php-fpm {version} reloaded but does not listen on {}; see its log",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts a pool file in place and returns once its master serves it. A pool that
    /// fails the config test is put back as it was (or removed), and the master is not
    /// reloaded.
    pub async fn put(
        &self,
        version: &PhpVersion,
        path: &Path,
        text: &str,
        socket: &Path,
    ) -> Result<Outcome, StepError> {
        let lock = master_lock(&self.conf(version));
        let _held = lock.lock().await;
        let dir = self.pool_dir(version);
        if !dir.is_dir() {
            return Err(StepError::permanent(format!(
                "the pool directory {} of php-fpm {version} does not exist; create it and include it from {} \
                 (or set AEGIR_PHP_FPM_POOL_DIR)",
                dir.display(),
                self.conf(version).display()
            )));
        }
        let old = std::fs::read(path).ok();
        if old.as_deref() == Some(text.as_bytes()) && tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(Outcome::Unchanged);
        }
        files::write(path, text.as_bytes(), 0o644, Ownership::default())?;
        if let Err(e) = self.config_test(version).await {
            match &old {
                Some(old) => files::write(path, old, 0o644, Ownership::default())?,
                None => files::remove_file(path)?,
            };
            return Err(e);
        }
        self.reload(version).await?;
        self.wait_socket(version, socket).await?;
        Ok(Outcome::Reloaded)
    }

    /// Takes a pool file away and reloads its master. Returns whether there was one.
    pub async fn remove(&self, version: &PhpVersion, path: &Path, socket: &Path) -> Result<bool, StepError> {
        let lock = master_lock(&self.conf(version));
        let _held = lock.lock().await;
        let Ok(old) = std::fs::read(path) else { return Ok(false) };
        files::remove_file(path)?;
        if let Err(e) = self.config_test(version).await {
            files::write(path, &old, 0o644, Ownership::default())?;
            return Err(StepError {
                reason: format!("the pool {} was kept: without it, {}", path.display(), e.reason),
                ..e
            });
        }
        // A master that is not running serves no pool: nothing to unload.
        if self.master(version).is_ok() {
            self.reload(version).await?;
        }
        files::remove_file(socket)?;
        Ok(true)
    }
}

/// Creates the site's system user (with a group of its own) unless it exists; returns
/// its uid and gid, and whether it was created.
pub async fn ensure_user(user: &str) -> Result<(u32, u32, bool), StepError> {
    if let Some(found) = nix::unistd::User::from_name(user).ok().flatten() {
        return Ok((found.uid.as_raw(), found.gid.as_raw(), false));
    }
    let args = [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "PHP of one site",
        user,
    ];
    let out = command::run("useradd", args, TIMEOUT).await.map_err(|e| match e {
        CommandError::NotFound { .. } => {
            StepError::permanent("`useradd` is not installed on this server; install the passwd package")
        }
        other => StepError::transient(other.to_string()),
    })?;
    // Two steps of one site at once: the other one made it.
    let found = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| StepError::permanent(format!("cannot create the system user `{user}`: {}", out.text())))?;
    Ok((found.uid.as_raw(), found.gid.as_raw(), out.success))
}

/// Removes the site's system user and its group. Returns whether there was one.
pub async fn remove_user(user: &str) -> Result<bool, StepError> {
    if nix::unistd::User::from_name(user).ok().flatten().is_none() {
        return Ok(false);
    }
    let out = command::run("userdel", [user], TIMEOUT)
        .await
        .map_err(|e| StepError::transient(format!("cannot remove the system user `{user}`: {e}")))?;
    if out.success {
        Ok(true)
    } else {
        Err(StepError::transient(format!("cannot remove the system user `{user}`: {}", out.text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_users_are_short_stable_and_distinct() {
        let a = site_user(&SiteUri::parse("www.a-very-long-name-of-a-shop.example.com").unwrap());
        let b = site_user(&SiteUri::parse("www.a-very-long-name-of-a-shop.example.org").unwrap());
        assert!(a.len() <= 32, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, site_user(&SiteUri::parse("www.a-very-long-name-of-a-shop.example.com").unwrap()));
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{a}");
    }

    #[test]
    fn versions_are_found_by_binary_and_config_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for v in ["8.2", "8.10", "7.4"] {
            std::fs::write(bin.join(format!("php-fpm{v}")), "").unwrap();
            std::fs::create_dir_all(dir.path().join(v)).unwrap();
            std::fs::write(dir.path().join(v).join("php-fpm.conf"), "").unwrap();
        }
        // A binary without its config is not an installed version.
        std::fs::write(bin.join("php-fpm8.3"), "").unwrap();
        let settings = PoolSettings {
            bin_dir: bin,
            conf: format!("{}/{{version}}/php-fpm.conf", dir.path().display()),
            pool_dir: String::new(),
            pid_file: String::new(),
            run_dir: PathBuf::new(),
            tmp_dir: PathBuf::new(),
            default_version: None,
        };
        let found: Vec<String> = settings.installed().iter().map(|v| v.as_str().to_owned()).collect();
        assert_eq!(found, ["7.4", "8.2", "8.10"]);
        assert_eq!(settings.version_for(None).unwrap().as_str(), "8.10");
        let wanted = PhpVersion::parse("8.3").unwrap();
        let err = settings.version_for(Some(&wanted)).unwrap_err();
        assert!(
            err.reason.contains("PHP 8.3 is not installed") && err.reason.contains("7.4, 8.2, 8.10"),
            "{}",
            err.reason
        );
    }

    #[tokio::test]
    async fn a_pool_that_fails_the_config_test_is_taken_out_and_the_old_one_put_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        // A php-fpm whose config test fails the way php-fpm's does, naming the bad line.
        let fake = bin.join("php-fpm8.2");
        std::fs::write(&fake, "#!/bin/sh\necho 'ERROR: [pool.d/aegir-x.conf:3] unknown entry' >&2\nexit 78\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.path().join("pool.d")).unwrap();
        std::fs::write(dir.path().join("php-fpm.conf"), "").unwrap();
        let settings = PoolSettings {
            bin_dir: bin,
            conf: format!("{}/php-fpm.conf", dir.path().display()),
            pool_dir: format!("{}/pool.d", dir.path().display()),
            pid_file: format!("{}/php-fpm.pid", dir.path().display()),
            run_dir: dir.path().to_path_buf(),
            tmp_dir: dir.path().to_path_buf(),
            default_version: None,
        };
        let version = PhpVersion::parse("8.2").unwrap();
        let socket = dir.path().join("x.sock");
        let new = dir.path().join("pool.d/aegir-new.conf");
        let err = settings.put(&version, &new, "[new]\n", &socket).await.unwrap_err();
        assert!(err.reason.contains("php-fpm 8.2 config test failed") && err.reason.contains("unknown entry"));
        assert!(!new.exists(), "a new pool that fails the test is removed");
        let old = dir.path().join("pool.d/aegir-old.conf");
        std::fs::write(&old, "[old]\n").unwrap();
        assert!(settings.put(&version, &old, "[old]\nbroken\n", &socket).await.is_err());
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "[old]\n", "a changed pool that fails is put back");
    }

    #[test]
    fn a_pool_limits_php_to_the_platform_the_files_and_its_temporary_directory() {
        let uri = SiteUri::parse("a.example.com").unwrap();
        let pool = Pool {
            uri: &uri,
            user: "site-a-1",
            web_group: "www-data",
            socket: Path::new("/run/aegir/php-fpm/site-a-1.php8.2.sock"),
            root: Path::new("/var/aegir/platforms/wp"),
            files_dir: Path::new("/var/aegir/platforms/wp/sites/a.example.com/files"),
            tmp: Path::new("/var/aegir/php-tmp/site-a-1"),
        };
        let text = render(&pool).unwrap();
        assert!(text.contains("[site-a-1]\nuser = site-a-1\n"), "{text}");
        assert!(text.contains(
            "php_admin_value[open_basedir] = /var/aegir/platforms/wp/:/var/aegir/platforms/wp/sites/a.example.com/files/:/var/aegir/php-tmp/site-a-1/\n"
        ));
        let evil = Pool { root: Path::new("/var/aegir/platforms/x\nuser = root"), ..pool };
        assert!(render(&evil).is_err());
    }
}
