//! A headless Chromium for the web UI's tests, driven over WebDriver: Debian's
//! `chromedriver` runs as a child of the test on a port of its own and starts
//! `/usr/bin/chromium`; dropping the [`Browser`] stops both.
//!
//! Pages are awaited by polling the DOM with a generous deadline, never by sleeping a
//! fixed time. Screenshots are written as PNG to `<target>/test-artifacts/screenshots/`
//! (see [`screenshot_dir`]), named after the page, so a run leaves a picture of each one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{PATIENCE, free_port, wait_for};

/// Debian's chromium (a wrapper script chromedriver starts with our arguments).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where screenshots go: `$AEGIR_TEST_ARTIFACTS/screenshots`, else
/// `<target>/test-artifacts/screenshots` next to the test binaries, which stays after
/// the run (unlike the test's temporary directories).
pub fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AEGIR_TEST_ARTIFACTS") {
        return PathBuf::from(dir).join("screenshots");
    }
    let exe = std::env::current_exe().expect("executable path");
    // target/<profile>/deps/<test>-<hash>
    let target = exe.ancestors().nth(3).expect("the target directory");
    target.join("test-artifacts").join("screenshots")
}

pub struct Browser {
    pub client: Client,
    /// The web UI's address, `http://127.0.0.1:<port>` (pages are given as paths).
    pub base: String,
    shots: PathBuf,
    /// A prefix for this browser's screenshot names, so two tests' pages do not overwrite
    /// each other.
    prefix: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium on the UI at `base`. Each host name
    /// in `hosts` is reached at 127.0.0.1 on its port, whatever port its address names:
    /// a site's link `http://<uri>/` lands on the test's web server, as a DNS record and
    /// port 80 would send a visitor.
    pub async fn start(base: &str, hosts: &[(&str, u16)], prefix: &str) -> Browser {
        let port = free_port();
        let profile = tempfile::Builder::new().prefix("aegir-e2e-chromium-").tempdir().unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Their scratch directories go in the profile's, removed with it.
            .env("TMPDIR", profile.path())
            // Its own process group: chromium outlives a killed chromedriver, so the
            // whole group is stopped on drop.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver; deploy/test.sh installs it)");
        let webdriver = format!("http://127.0.0.1:{port}");
        let status = format!("{webdriver}/status");
        let ready =
            wait_for(PATIENCE, || async { matches!(reqwest::get(&status).await, Ok(r) if r.status().is_success()) })
                .await;
        assert!(ready, "chromedriver did not answer at {status}");

        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
            // Sites are plain http on a test port: no https upgrade, no first-run pages.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".into(),
            "--no-first-run".into(),
            "--disable-gpu".into(),
        ];
        if !hosts.is_empty() {
            let rules: Vec<String> = hosts.iter().map(|(host, port)| format!("MAP {host} 127.0.0.1:{port}")).collect();
            args.push(format!("--host-resolver-rules={}", rules.join(",")));
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{}: {e}", shots.display()));
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            shots,
            prefix: prefix.into(),
            driver,
            _profile: profile,
        }
    }

    /// Opens a page of the UI (`/sites`), or any `http://` address as it is.
    pub async fn goto(&self, path: &str) {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        self.client.goto(&url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The element `css` once the page has it.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(PATIENCE).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => self.fail(&format!("no `{css}` on the page ({e})")).await,
        }
    }

    /// Elements matching `css` now (none is no error).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap_or_default()
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element.text().await.unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `value` into the field `css`, replacing what it held.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("clearing `{css}`: {e}"));
        field.send_keys(value).await.unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// Picks the option of the select `css` whose value is `value`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.find(css).await;
        if let Err(e) = select.select_by_value(value).await {
            let options = select.html(true).await.unwrap_or_default();
            panic!("no option `{value}` in `{css}` ({e}); it offers:\n{options}");
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element.click().await.unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Accepts the confirm() dialog a click opened.
    pub async fn accept_dialog(&self) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = self.client.get_alert_text().await {
                self.client.accept_alert().await.expect("accepting the dialog");
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail("no dialog opened").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's path starts with `prefix` and returns it.
    pub async fn wait_path(&self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) {
                return path;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("the browser stayed at {path}, not {prefix}…")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the text of `css` until `done` holds or `patience` passes, and returns it.
    pub async fn wait_text(&self, css: &str, patience: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("`{css}` still reads {text:?} after {patience:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reloads the page (an address served by a web server that just reloaded) until
    /// its text satisfies `done` three times in a row — old nginx workers may answer a
    /// last request — and returns that text.
    pub async fn wait_page(&self, url: &str, patience: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + patience;
        let mut steady = 0;
        loop {
            self.goto(url).await;
            let text = self.page_text().await;
            steady = if done(&text) { steady + 1 } else { 0 };
            if steady == 3 {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("{url} never showed what was expected; it shows:\n{text}")).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signs in on `/login` and waits for the dashboard.
    pub async fn sign_in(&self, user: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#f-user", user).await;
        self.fill("#f-password", password).await;
        self.find("#f-password").await.send_keys("\u{e007}").await.expect("pressing Enter");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.path().await.starts_with("/login") {
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("signing in as {user} did not leave /login")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the page as `<prefix><name>.png` and returns the file's path (printed too).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = self.shots.join(format!("{}{name}.png", self.prefix));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }

    /// Fails the test with what the page showed: its address, a screenshot and its text.
    pub async fn fail(&self, what: &str) -> ! {
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let path = self.shots.join(format!("{}failed.png", self.prefix));
                std::fs::write(&path, png).ok().map(|_| path)
            }
            Err(_) => None,
        };
        let text = self.page_text().await;
        panic!("{what}\nat {url} (screenshot {:?}); the page reads:\n{text}", shot.as_deref().map(Path::display));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every chromium process are in the group led by chromedriver.
        let Some(pid) = self.driver.id() else { return };
        let group = format!("-{pid}");
        let _ = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
        // A moment to quit, so the profile is not removed under a running browser.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline && matches!(self.driver.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    }
}
