//! The web servers we drive, behind one interface: version, config test, whether our
//! base config is included, and reload. Vhost changes go through one queue per web
//! server ([`crate::config_queue`]), so changes made at once share a test and a reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use aegir_contract::{HttpServiceType, Lane};
use aegir_worker::StepError;
use aegir_worker::command::{self, CommandError, CommandOutput};

use crate::config::HttpConfig;
use crate::config_queue::{Applied, Change, Queue, Reload, Server};
use crate::nginx_master::{self, BuildPaths, Master, ReloadError};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The queue of each web server this worker drives (one, unless its type changes).
static QUEUES: LazyLock<Mutex<HashMap<String, Queue>>> = LazyLock::new(Mutex::default);

#[derive(Clone)]
pub struct WebServer {
    kind: HttpServiceType,
    program: &'static str,
    /// Arguments that select the main config file, e.g. `-c /etc/nginx/nginx.conf`.
    conf_args: Vec<String>,
    /// The main config file when not the web server's own.
    conf: Option<PathBuf>,
    config_dir: PathBuf,
    /// Steps the worker runs at once: at most this many changes can wait for a reload.
    steps_at_once: usize,
    /// The port sites with ssl are served on over https.
    https_port: u16,
}

/// Room in nginx's server name hash for the names of many sites: its defaults fit a few
/// hundred, and beyond that it warns or refuses the config. Bucket 128 fits long names.
const NGINX_NAME_HASH: &str = "server_names_hash_max_size 131072;\nserver_names_hash_bucket_size 128;\n";

impl WebServer {
    pub fn new(kind: HttpServiceType, config: &HttpConfig) -> Self {
        let (program, conf_flag, conf) = match kind {
            HttpServiceType::Nginx => ("nginx", "-c", &config.nginx_conf),
            // apache2ctl passes no options through to its `graceful`, so an apache with
            // a config of its own is driven through apache2 itself.
            HttpServiceType::Apache if config.apache_conf.is_some() => ("apache2", "-f", &config.apache_conf),
            HttpServiceType::Apache => ("apache2ctl", "-f", &config.apache_conf),
        };
        let conf_args = conf.iter().flat_map(|c| [conf_flag.to_owned(), c.display().to_string()]).collect();
        Self {
            kind,
            program,
            conf_args,
            conf: conf.clone(),
            config_dir: config.config_dir.clone(),
            steps_at_once: config.steps_at_once,
            https_port: config.certs.https_port,
        }
    }

    /// The file holding our base config, which the main config must include.
    pub fn base_config_path(&self) -> PathBuf {
        match self.kind {
            HttpServiceType::Nginx => self.config_dir.join("nginx.conf"),
            HttpServiceType::Apache => self.config_dir.join("apache.conf"),
        }
    }

    pub fn vhost_dir(&self) -> PathBuf {
        self.config_dir.join("vhost.d")
    }

    /// Our base config: it includes every vhost we write. `name_hash`: nginx gets room
    /// for many server names (left out when the main config sizes that hash itself).
    pub fn base_config(&self, server: &str, port: u16, name_hash: bool) -> String {
        let vhosts = self.vhost_dir().join("*.conf");
        // nginx vhosts say `listen` themselves; apache needs one `Listen` per port, and
        // its distribution config (ports.conf) already has 80 and 443.
        let mut listen = if matches!(port, 80 | 443) { String::new() } else { format!("Listen {port}\n") };
        // The https port, when mod_ssl is there to serve it (ports.conf has 443 already).
        let https = self.https_port;
        if !matches!(https, 80 | 443) && https != port {
            listen.push_str(&format!("<IfModule ssl_module>\n    Listen {https}\n</IfModule>\n"));
        }
        match self.kind {
            HttpServiceType::Nginx => format!(
                "# Base web server config of {server}, written by Aegir at server verify.\n\
                 # Include it in the http block of nginx.conf. Changes here are overwritten.\n\
                 {}include {};\n",
                if name_hash { NGINX_NAME_HASH } else { "" },
                vhosts.display()
            ),
            HttpServiceType::Apache => format!(
                "# Base web server config of {server}, written by Aegir at server verify.\n\
                 # Include it from apache2.conf. Changes here are overwritten.\n\
                 {listen}IncludeOptional {}\n",
                vhosts.display()
            ),
        }
    }

    async fn run(&self, args: &[&str]) -> Result<CommandOutput, StepError> {
        let mut all: Vec<&str> = self.conf_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        command::run(self.program, &all, TIMEOUT).await.map_err(|e| match e {
            CommandError::NotFound { .. } => StepError::permanent(format!(
                "{} is not installed on this server (`{}` not found); install its package",
                self.kind, self.program
            )),
            other => StepError::transient(other.to_string()),
        })
    }

    /// `nginx/1.22.1` or `Apache/2.4.62 (Debian)`.
    pub async fn version(&self) -> Result<String, StepError> {
        let out = self.run(&["-v"]).await?;
        let text = out.text();
        let version = text
            .lines()
            .find_map(|l| l.split_once("version:").map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_owned());
        Ok(version)
    }

    /// Tests the whole config; the error carries the web server's own words.
    pub async fn config_test(&self) -> Result<(), StepError> {
        let args: &[&str] = match self.kind {
            HttpServiceType::Nginx => &["-t", "-q"],
            HttpServiceType::Apache => &["-t"],
        };
        let out = self.run(args).await?;
        if out.success {
            Ok(())
        } else {
            Err(StepError::permanent(format!("{} config test failed:\n{}", self.kind, out.text())))
        }
    }

    /// Whether the running config includes `file`.
    pub async fn includes(&self, file: &Path) -> Result<bool, StepError> {
        let args: &[&str] = match self.kind {
            HttpServiceType::Nginx => &["-T", "-q"],
            HttpServiceType::Apache => &["-t", "-D", "DUMP_INCLUDES"],
        };
        let out = self.run(args).await?;
        Ok(out.success && out.stdout.contains(&file.display().to_string()))
    }

    /// Whether the web server loads `module` (apache's `ssl_module`); nginx's are built in.
    pub async fn has_module(&self, module: &str) -> Result<bool, StepError> {
        if self.kind == HttpServiceType::Nginx {
            return Ok(true);
        }
        let out = self.run(&["-t", "-D", "DUMP_MODULES"]).await?;
        Ok(out.success && out.stdout.lines().any(|l| l.split_whitespace().next() == Some(module)))
    }

    /// Whether the web server runs from its distribution's config, whose modules
    /// `a2enmod` manages (not from a main config of its own).
    pub fn distribution_config(&self) -> bool {
        self.conf.is_none()
    }

    /// This web server's queue of config changes, started on first use.
    fn queue(&self) -> Queue {
        let key = format!("{}|{}|{:?}|{}", self.kind, self.program, self.conf_args, self.config_dir.display());
        let mut queues = QUEUES.lock().expect("web server queues lock");
        queues.entry(key).or_insert_with(|| Queue::start(self.clone(), self.steps_at_once)).clone()
    }

    /// Puts a vhost in place, tested with the whole config, and returns once the web
    /// server serves it; vhosts written by other steps at the same time share the test
    /// and the reload. When the test fails the previous vhost is put back (or the new
    /// one removed), so one broken site never stops the server from reloading for the
    /// others; the error carries the web server's own words.
    /// Bulk-lane steps' vhosts may wait longer for others to share the reload.
    pub async fn apply_vhost(
        &self,
        path: &Path,
        contents: &str,
        reload: Reload,
        lane: Lane,
    ) -> Result<Applied, StepError> {
        self.queue().apply_in(path, Change::Put(contents.as_bytes().to_vec()), reload, lane).await
    }

    /// Removes a vhost and returns once the web server no longer serves it. Returns
    /// whether there was one.
    pub async fn remove_vhost(&self, path: &Path) -> Result<bool, StepError> {
        Ok(self.queue().apply(path, Change::Remove, Reload::IfChanged).await?.changed)
    }

    /// Makes every change written before the call live, sharing the reload with the
    /// changes other steps make at the same time.
    pub async fn reload(&self) -> Result<(), StepError> {
        self.queue().reload().await
    }

    /// Held while the base config is written and tested, so no reload loads it half done.
    pub async fn exclusive(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.queue().exclusive().await
    }

    /// Loads the config on disk and returns once the web server serves it (nginx), or
    /// once it was told to (apache, whose graceful restart gives no sign of its end).
    async fn reload_now(&self) -> Result<(), StepError> {
        if self.kind == HttpServiceType::Nginx {
            match self.reload_master().await {
                Ok(()) => return Ok(()),
                Err(ReloadError::Unreachable(why)) => {
                    tracing::debug!(%why, "reloading nginx with `nginx -s reload`");
                }
                Err(e @ ReloadError::NoNewWorkers(_)) => return Err(StepError::transient(e.to_string())),
                Err(e @ ReloadError::Stopped) => return Err(StepError::permanent(e.to_string())),
            }
        }
        let args: &[&str] = match (self.kind, self.program) {
            (HttpServiceType::Nginx, _) => &["-s", "reload"],
            (HttpServiceType::Apache, "apache2") => &["-k", "graceful"],
            (HttpServiceType::Apache, _) => &["graceful"],
        };
        let out = self.run(args).await?;
        if out.success {
            Ok(())
        } else {
            Err(StepError::permanent(format!("{} did not reload (is it running?):\n{}", self.kind, out.text())))
        }
    }

    async fn reload_master(&self) -> Result<(), ReloadError> {
        let version = command::run(self.program, ["-V"], TIMEOUT).await.map(|out| out.text()).unwrap_or_default();
        let pid_file = nginx_master::pid_file(self.conf.as_deref(), &BuildPaths::parse(&version))
            .ok_or_else(|| ReloadError::Unreachable("its pid file is not known".into()))?;
        Master::from_pid_file(&pid_file)?.reload(TIMEOUT).await
    }
}

impl Server for WebServer {
    async fn test(&self) -> Result<(), StepError> {
        self.config_test().await
    }

    async fn reload(&self) -> Result<(), StepError> {
        self.reload_now().await
    }
}
