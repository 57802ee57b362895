//! The web servers we drive, behind one interface: version, config test, whether our
//! base config is included, and reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::HttpServiceType;
use aegir_worker::StepError;
use aegir_worker::command::{self, CommandError, CommandOutput};

use crate::config::HttpConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Held while a vhost is put in place and tested, and while the server reloads, so
/// two steps running at once never test (or load) each other's half-done files.
static CONFIG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct WebServer {
    kind: HttpServiceType,
    program: &'static str,
    /// Arguments that select the main config file, e.g. `-c /etc/nginx/nginx.conf`.
    conf_args: Vec<String>,
    config_dir: PathBuf,
}

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
        Self { kind, program, conf_args, config_dir: config.config_dir.clone() }
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

    /// Our base config: it includes every vhost we write.
    pub fn base_config(&self, server: &str, port: u16) -> String {
        let vhosts = self.vhost_dir().join("*.conf");
        // nginx vhosts say `listen` themselves; apache needs one `Listen` per port, and
        // its distribution config (ports.conf) already has 80 and 443.
        let listen = if matches!(port, 80 | 443) { String::new() } else { format!("Listen {port}\n") };
        match self.kind {
            HttpServiceType::Nginx => format!(
                "# Base web server config of {server}, written by Aegir at server verify.\n\
                 # Include it in the http block of nginx.conf. Changes here are overwritten.\n\
                 include {};\n",
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

    pub async fn reload(&self) -> Result<(), StepError> {
        let _config = CONFIG_LOCK.lock().await;
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
}

impl WebServer {
    /// Puts a vhost in place and tests the whole config with it. When the test fails
    /// the previous vhost is put back (or the new one removed), so one broken site
    /// never stops the server from reloading for the others; the error carries the web
    /// server's own words. Returns whether the file changed.
    pub async fn apply_vhost(&self, path: &Path, contents: &str) -> Result<bool, StepError> {
        let _config = CONFIG_LOCK.lock().await;
        let previous = std::fs::read(path).ok();
        if !crate::files::write(path, contents.as_bytes(), 0o600, crate::files::Ownership::default())? {
            return Ok(false);
        }
        if let Err(e) = self.config_test().await {
            match previous {
                Some(old) => {
                    crate::files::write(path, &old, 0o600, crate::files::Ownership::default())?;
                }
                None => {
                    crate::files::remove_file(path)?;
                }
            }
            return Err(e);
        }
        Ok(true)
    }
}
