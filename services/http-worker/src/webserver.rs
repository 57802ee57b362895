//! The web servers we drive, behind one interface: version, config test, whether our
//! base config is included, and reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::HttpServiceType;
use aegir_worker::StepError;
use aegir_worker::command::{self, CommandError, CommandOutput};

use crate::config::HttpConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

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
    pub fn base_config(&self, server: &str) -> String {
        let vhosts = self.vhost_dir().join("*.conf");
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
                 IncludeOptional {}\n",
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
        let args: &[&str] = match self.kind {
            HttpServiceType::Nginx => &["-s", "reload"],
            HttpServiceType::Apache => &["graceful"],
        };
        let out = self.run(args).await?;
        if out.success {
            Ok(())
        } else {
            Err(StepError::permanent(format!("{} did not reload (is it running?):\n{}", self.kind, out.text())))
        }
    }
}
