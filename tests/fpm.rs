//! php-fpm masters of the test's own, one per PHP version, each including a pool
//! directory the http-worker writes the sites' pools into, as Debian's `php<version>-fpm`
//! services include `/etc/php/<version>/fpm/pool.d`.
//!
//! Debian 12 ships PHP 8.2 only. A version the machine does not have is served by a
//! master running the installed php-fpm under the other version's name (a link
//! `php-fpm<version>` to it): pools move between masters as they would between real
//! versions, and the version PHP reports is the installed one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Options, PATIENCE};

pub struct FpmMasters {
    pub dir: tempfile::TempDir,
    masters: Vec<(String, std::process::Child)>,
}

/// The installed versioned php-fpm binary, e.g. `/usr/sbin/php-fpm8.2`.
pub fn installed_fpm() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("php-fpm")).is_some_and(|v| {
                v.split_once('.').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
            })
        })
        .collect();
    found.sort();
    found.pop().expect("a versioned php-fpm is installed")
}

impl FpmMasters {
    /// Starts a master for each of `versions`; a version that is not installed runs the
    /// installed php-fpm under its name.
    pub fn start(versions: &[&str]) -> FpmMasters {
        let dir = tempfile::Builder::new().prefix("aegir-e2e-fpm-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let installed = installed_fpm();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut masters = Vec::new();
        for version in versions {
            let program = bin.join(format!("php-fpm{version}"));
            std::os::unix::fs::symlink(&installed, &program).unwrap();
            let d = dir.path().join(version);
            std::fs::create_dir_all(d.join("pool.d")).unwrap();
            let dd = d.display();
            // A master needs one pool of its own before any site has one.
            let conf = format!(
                "[global]\npid = {dd}/php-fpm.pid\nerror_log = {dd}/error.log\ndaemonize = no\n\
                 include = {dd}/pool.d/*.conf\n\
                 [base]\nuser = nobody\ngroup = nogroup\nlisten = {dd}/base.sock\npm = ondemand\npm.max_children = 1\n"
            );
            let path = d.join("php-fpm.conf");
            std::fs::write(&path, conf).unwrap();
            let child = std::process::Command::new(&program)
                .arg("--fpm-config")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let deadline = std::time::Instant::now() + PATIENCE;
            while !d.join("base.sock").exists() {
                assert!(std::time::Instant::now() < deadline, "php-fpm {version} did not start in {dd}");
                std::thread::sleep(Duration::from_millis(50));
            }
            masters.push((version.to_string(), child));
        }
        FpmMasters { dir, masters }
    }

    /// The http-worker's settings for these masters, a pool per site, with the test
    /// nginx's group (its workers run as `nobody:nogroup`) as the web server's group.
    pub fn options(&self, options: Options) -> Options {
        let d = self.dir.path().display();
        options
            .env("http-worker", "AEGIR_PHP_FPM_BIN_DIR", &format!("{d}/bin"))
            .env("http-worker", "AEGIR_PHP_FPM_CONF", &format!("{d}/{{version}}/php-fpm.conf"))
            .env("http-worker", "AEGIR_PHP_FPM_POOL_DIR", &format!("{d}/{{version}}/pool.d"))
            .env("http-worker", "AEGIR_PHP_FPM_PID", &format!("{d}/{{version}}/php-fpm.pid"))
            .env("http-worker", "AEGIR_PHP_FPM_RUN_DIR", &format!("{d}/run"))
            .env("http-worker", "AEGIR_PHP_TMP_DIR", &format!("{d}/tmp"))
            .env("http-worker", "AEGIR_WEB_GROUP", "nogroup")
    }

    /// The process id of the master of `version`.
    pub fn master_pid(&self, version: &str) -> u32 {
        self.masters.iter().find(|(v, _)| v == version).map(|(_, c)| c.id()).expect("a master of that version")
    }

    /// The pool directory of `version`'s master.
    pub fn pool_dir(&self, version: &str) -> PathBuf {
        self.dir.path().join(version).join("pool.d")
    }

    /// The sites' temporary directories.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// The pool files in `version`'s pool directory.
    pub fn pools(&self, version: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> =
            std::fs::read_dir(self.pool_dir(version)).unwrap().flatten().map(|e| e.path()).collect();
        found.sort();
        found
    }

    /// The pool of the site `uri` in `version`'s pool directory, if there is one.
    pub fn pool_of(&self, version: &str, uri: &str) -> Option<PathBuf> {
        let marker = format!("the php-fpm pool of {uri}.");
        self.pools(version).into_iter().find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&marker)))
    }
}

/// The owner of a pool file's pool: its `user = ` line.
pub fn pool_user(pool: &Path) -> String {
    let text = std::fs::read_to_string(pool).unwrap();
    text.lines().find_map(|l| l.strip_prefix("user = ")).expect("a pool has a user").to_owned()
}

impl Drop for FpmMasters {
    fn drop(&mut self) {
        for (_, child) in &mut self.masters {
            // SIGTERM: the master stops its pools' processes too, as a kill would not.
            let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
