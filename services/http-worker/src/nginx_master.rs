//! The running nginx's master process, and a reload that returns once the master has
//! loaded the new config and started workers with it.
//!
//! `nginx -s reload` only sends a signal, and first parses the whole config again just
//! to find the pid file: with thousands of vhosts that is seconds of work for nothing,
//! and it returns seconds before the master has loaded the config. So the master is
//! found from the pid file the main config names, sent SIGHUP, and watched until a
//! worker it did not have before appears.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often the master's workers are looked at while it reloads.
const POLL: Duration = Duration::from_millis(10);
/// Polls without a new worker appearing after which the master is taken to have started
/// all of a reload's workers (forking a master of a large config takes milliseconds).
const STEADY_POLLS: u32 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReloadError {
    /// No master to signal or watch (not running, no workers, not ours to signal): the
    /// caller falls back to `nginx -s reload`, whose words say what is wrong.
    #[error("the nginx master cannot be reloaded directly: {0}")]
    Unreachable(String),
    #[error(
        "nginx got the reload signal but started no workers with the new config within {} s; its error log says why",
        .0.as_secs()
    )]
    NoNewWorkers(Duration),
    #[error("nginx stopped while reloading; start it again (its error log says why it stopped)")]
    Stopped,
}

/// What `nginx -V` says about where things are when the config does not say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BuildPaths {
    pub prefix: Option<PathBuf>,
    pub conf: Option<PathBuf>,
    pub pid: Option<PathBuf>,
}

impl BuildPaths {
    /// From the `configure arguments:` line of `nginx -V`.
    pub fn parse(version_output: &str) -> Self {
        let mut paths = Self::default();
        for word in version_output.split_whitespace() {
            if let Some(v) = word.strip_prefix("--prefix=") {
                paths.prefix = Some(PathBuf::from(v));
            } else if let Some(v) = word.strip_prefix("--conf-path=") {
                paths.conf = Some(PathBuf::from(v));
            } else if let Some(v) = word.strip_prefix("--pid-path=") {
                paths.pid = Some(PathBuf::from(v));
            }
        }
        paths
    }
}

/// The value of the `pid` directive at the top level of an nginx config, if any.
pub fn pid_directive(conf: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut statement = String::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or_default();
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    statement.clear();
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    statement.clear();
                }
                ';' => {
                    let mut words = statement.split_whitespace();
                    if depth == 0 && words.next() == Some("pid") {
                        let value = words.next()?.trim_matches(|c| c == '"' || c == '\'');
                        return Some(value.to_owned());
                    }
                    statement.clear();
                }
                c => statement.push(c),
            }
        }
        statement.push(' ');
    }
    None
}

/// The pid file of the nginx run with `conf` (nginx's built-in config when `None`).
pub fn pid_file(conf: Option<&Path>, build: &BuildPaths) -> Option<PathBuf> {
    let conf = conf.map(Path::to_path_buf).or_else(|| build.conf.clone())?;
    let text = std::fs::read_to_string(&conf).ok()?;
    let prefix = build.prefix.clone().unwrap_or_default();
    match pid_directive(&text) {
        Some(value) if value == "off" => None,
        Some(value) => Some(prefix.join(value)),
        None => build.pid.clone().or_else(|| Some(prefix.join("logs/nginx.pid"))),
    }
}

pub struct Master {
    pid: Pid,
}

impl Master {
    /// The master whose pid is in `pid_file`, if that process is an nginx master.
    pub fn from_pid_file(pid_file: &Path) -> Result<Self, ReloadError> {
        let unreachable = |why: String| ReloadError::Unreachable(why);
        let text = std::fs::read_to_string(pid_file)
            .map_err(|e| unreachable(format!("cannot read {}: {e}", pid_file.display())))?;
        let pid: i32 = text
            .trim()
            .parse()
            .map_err(|_| unreachable(format!("{} does not hold a process id", pid_file.display())))?;
        // A stale pid file may name another process now: never signal that.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.starts_with(b"nginx: master process") {
            return Err(unreachable(format!("process {pid} (from {}) is not an nginx master", pid_file.display())));
        }
        Ok(Self { pid: Pid::from_raw(pid) })
    }

    fn is_running(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid)).is_ok_and(|c| c.starts_with(b"nginx: master process"))
    }

    /// The master's child processes (its workers, and cache helpers if any).
    pub fn children(&self) -> Vec<i32> {
        let pid = self.pid.as_raw();
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            return text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        }
        // Kernels without that file: every process's parent.
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|child| parent_of(*child) == Some(pid))
            .collect()
    }

    /// Sends SIGHUP and waits until the master has a worker it did not have before: it
    /// has loaded the config on disk and serves it. A master that cannot load it keeps
    /// its old workers, and this ends after `timeout`.
    ///
    /// Returns only once the new workers stopped appearing: the master forks them one
    /// after another, and a worker of this reload forked after the next reload looked at
    /// the children would pass for a worker of that one, which would then return before
    /// the master even read its config.
    pub async fn reload(&self, timeout: Duration) -> Result<(), ReloadError> {
        let before = self.children();
        if before.is_empty() {
            return Err(ReloadError::Unreachable("the master has no workers to tell a reload by".into()));
        }
        kill(self.pid, Signal::SIGHUP).map_err(|e| ReloadError::Unreachable(format!("cannot signal it: {e}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut new, mut steady) = (0, 0);
        loop {
            tokio::time::sleep(POLL).await;
            let now_new = self.children().iter().filter(|c| !before.contains(c)).count();
            if now_new > 0 {
                steady = if now_new == new { steady + 1 } else { 0 };
                new = now_new;
                if steady == STEADY_POLLS || tokio::time::Instant::now() > deadline {
                    return Ok(());
                }
                continue;
            }
            if !self.is_running() {
                return Err(ReloadError::Stopped);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ReloadError::NoNewWorkers(timeout));
            }
        }
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_directive_is_read_from_the_top_level_only() {
        let conf = "user www-data;\n# pid /commented;\npid /run/test/nginx.pid;\nevents { worker_connections 64; }\n";
        assert_eq!(pid_directive(conf).as_deref(), Some("/run/test/nginx.pid"));
        let nested = "http {\n  server { pid /not/here; }\n}\n";
        assert_eq!(pid_directive(nested), None);
        assert_eq!(pid_directive("pid\n  \"/run/quoted.pid\"\n;").as_deref(), Some("/run/quoted.pid"));
        assert_eq!(pid_directive("events {}\npid logs/x.pid;").as_deref(), Some("logs/x.pid"));
    }

    #[test]
    fn build_paths_come_from_the_configure_arguments() {
        let v = "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11\nconfigure arguments: \
                 --with-cc-opt='-g -O2 -ffile-prefix-map=/build=.' --prefix=/usr/share/nginx \
                 --conf-path=/etc/nginx/nginx.conf --pid-path=/run/nginx.pid --with-debug";
        let paths = BuildPaths::parse(v);
        assert_eq!(paths.prefix, Some(PathBuf::from("/usr/share/nginx")));
        assert_eq!(paths.conf, Some(PathBuf::from("/etc/nginx/nginx.conf")));
        assert_eq!(paths.pid, Some(PathBuf::from("/run/nginx.pid")));
    }

    #[test]
    fn the_pid_file_is_the_configs_own_or_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let build =
            BuildPaths { prefix: Some("/usr/share/nginx".into()), conf: None, pid: Some("/run/nginx.pid".into()) };
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, "pid /tmp/x/nginx.pid;\nevents {}\n").unwrap();
        assert_eq!(pid_file(Some(&conf), &build), Some(PathBuf::from("/tmp/x/nginx.pid")));
        std::fs::write(&conf, "pid run/nginx.pid;\n").unwrap();
        assert_eq!(pid_file(Some(&conf), &build), Some(PathBuf::from("/usr/share/nginx/run/nginx.pid")));
        std::fs::write(&conf, "events {}\n").unwrap();
        assert_eq!(pid_file(Some(&conf), &build), Some(PathBuf::from("/run/nginx.pid")));
    }

    #[test]
    fn a_process_that_is_not_an_nginx_master_is_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("nginx.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        let err = Master::from_pid_file(&pid_file).err().unwrap();
        assert!(matches!(err, ReloadError::Unreachable(ref why) if why.contains("not an nginx master")), "{err}");
        assert!(matches!(Master::from_pid_file(&dir.path().join("none")), Err(ReloadError::Unreachable(_))));
    }

    /// An nginx of its own, stopped when dropped.
    struct Nginx {
        _dir: tempfile::TempDir,
        master: Master,
    }

    impl Drop for Nginx {
        fn drop(&mut self) {
            let _ = kill(self.master.pid, Signal::SIGTERM);
        }
    }

    /// A real nginx with `workers` workers and enough vhosts that forking each worker
    /// takes a while.
    fn nginx(workers: usize, vhosts: usize) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let mut servers = String::new();
        for n in 0..vhosts {
            servers.push_str(&format!(
                "server {{ listen 127.0.0.1:{port}; server_name site{n}.test; root {d};
                 location ~ \\.php$ {{ return 404; }}
 location / {{ try_files $uri =404; }} }}
"
            ));
        }
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log;
                 events {{ worker_connections 16; }}
                 http {{ access_log off; server_names_hash_bucket_size 64; server_names_hash_max_size 65536;
                 client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
                 uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{servers}}}
"
            ),
        )
        .unwrap();
        let out = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .output()
            .expect("nginx is installed (deploy/lib.sh installs it)");
        assert!(out.status.success(), "nginx: {}", String::from_utf8_lossy(&out.stderr));
        let master = Master::from_pid_file(&dir.path().join("nginx.pid")).unwrap();
        Nginx { _dir: dir, master }
    }

    #[tokio::test]
    async fn a_reload_returns_once_every_new_worker_started() {
        const WORKERS: usize = 16;
        let nginx = nginx(WORKERS, 2000);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while nginx.master.children().len() < WORKERS {
            assert!(tokio::time::Instant::now() < deadline, "nginx never started its workers");
            tokio::time::sleep(POLL).await;
        }
        for _ in 0..3 {
            let before = nginx.master.children();
            nginx.master.reload(Duration::from_secs(30)).await.unwrap();
            let new = nginx.master.children().into_iter().filter(|c| !before.contains(c)).count();
            // A worker forked after this returned would pass for one of the next reload.
            assert_eq!(new, WORKERS, "the reload returned before all its workers were there");
        }
    }

    #[test]
    fn a_processs_parent_is_read_from_proc() {
        assert_eq!(parent_of(std::process::id() as i32), Some(std::os::unix::process::parent_id() as i32));
    }
}
