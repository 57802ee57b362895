//! The web servers we drive, behind one interface: version, config test, whether our
//! base config is included, and reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aegir_contract::HttpServiceType;
use aegir_worker::StepError;
use aegir_worker::command::{self, CommandError, CommandOutput};

use crate::config::HttpConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Held while a vhost is put in place and tested, and while the server reloads, so
/// two steps running at once never test (or load) each other's half-done files.
static CONFIG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static RELOADS: Coalesced = Coalesced::new();

/// An action many callers ask for at once, run once for all who asked before it began:
/// one run at a time, and a caller returns only after a run that began after its ask
/// succeeded (its own, or one that covered it).
pub struct Coalesced {
    one_at_a_time: tokio::sync::Mutex<()>,
    asked: AtomicU64,
    covered: AtomicU64,
}

impl Coalesced {
    pub const fn new() -> Self {
        Self { one_at_a_time: tokio::sync::Mutex::const_new(()), asked: AtomicU64::new(0), covered: AtomicU64::new(0) }
    }

    /// Runs `action` unless a run that began after this ask has succeeded meanwhile.
    /// Returns whether this call ran it. A failed run covers nobody: the next caller
    /// runs it again.
    pub async fn run<F, Fut, E>(&self, action: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        // Taken after the caller's change is in place: a run that starts later covers it.
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.one_at_a_time.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(false);
        }
        let covering = self.asked.load(Ordering::SeqCst);
        action().await?;
        self.covered.fetch_max(covering, Ordering::SeqCst);
        Ok(true)
    }
}

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

    /// Makes every change written before the call live. Reloads asked for while one
    /// runs share the next one, so a burst of site changes ends in at most two reloads,
    /// and no caller returns before a reload that began after its own ask succeeded.
    /// Returns whether this call ran the reload (`false`: another one covered it).
    pub async fn reload(&self) -> Result<bool, StepError> {
        RELOADS.run(|| self.reload_now()).await
    }

    async fn reload_now(&self) -> Result<(), StepError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::Coalesced;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn asks_made_during_a_run_share_the_next_one_and_each_waits_for_a_run_after_it() {
        let reloads = Arc::new(Coalesced::new());
        let runs = Arc::new(AtomicU64::new(0));
        // What a run made live: the highest ask number written before it began.
        let written = Arc::new(AtomicU64::new(0));
        let live = Arc::new(AtomicU64::new(0));
        let slow_run =
            |reloads: Arc<Coalesced>, runs: Arc<AtomicU64>, written: Arc<AtomicU64>, live: Arc<AtomicU64>| async move {
                reloads
                    .run(|| async {
                        let seen = written.load(Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        live.fetch_max(seen, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    })
                    .await
                    .unwrap()
            };
        let first = tokio::spawn(slow_run(reloads.clone(), runs.clone(), written.clone(), live.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Ten changes while the first run is under way.
        let mut asks = Vec::new();
        for n in 1..=10 {
            written.store(n, Ordering::SeqCst);
            let (reloads, runs, written, live) = (reloads.clone(), runs.clone(), written.clone(), live.clone());
            asks.push(tokio::spawn(async move {
                slow_run(reloads, runs, written, live.clone()).await;
                // Back only once its own change is live.
                assert!(live.load(Ordering::SeqCst) >= n, "ask {n} returned before its change was live");
            }));
        }
        assert!(first.await.unwrap(), "the first ask runs");
        for ask in asks {
            ask.await.unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "eleven asks, two runs: the first and one for all the others");
    }

    #[tokio::test]
    async fn a_failed_run_covers_nobody() {
        let reloads = Coalesced::new();
        assert_eq!(reloads.run(|| async { Err::<(), &str>("config test failed") }).await, Err("config test failed"));
        assert_eq!(reloads.run(|| async { Ok::<(), &str>(()) }).await, Ok(true), "the next ask runs again");
    }
}
