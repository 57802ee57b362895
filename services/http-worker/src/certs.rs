//! Sites' certificates: ordered over ACME (RFC 8555) with HTTP-01 challenges, and kept
//! under the certificate directory. Each certificate gets a directory of its own
//! (`sites/<uri>/<serial>/`, its key 0600), and a `current` file names the one the
//! site's vhost uses: a new certificate goes live with a vhost naming its directory,
//! tested and reloaded like any vhost change, and becomes `current` only then. So a
//! certificate the web server refuses leaves the old one serving, and both files of a
//! certificate always change together.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::CertificateSource;
use aegir_worker::StepError;
use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use crate::config::CertConfig;
use crate::files::{self, Ownership};

/// Mode of private keys and of the ACME account (whose key is in it).
pub const KEY_MODE: u32 = 0o600;

/// In a certificate's directory: the certificate was supplied by the site's owner.
const SUPPLIED_MARKER: &str = "supplied";

/// An order that takes longer than this has failed (a CA that stopped answering).
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// The certificates of one web server.
pub struct CertStore<'a> {
    config: &'a CertConfig,
}

/// A certificate on disk: its directory, chain and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: DateTime<Utc>,
    /// Hex, colon separated.
    pub serial: String,
    pub issuer: String,
    /// The DNS names it is valid for.
    pub names: Vec<String>,
}

fn io(action: &str, path: &Path, e: std::io::Error) -> StepError {
    StepError::permanent(format!("cannot {action} {}: {e}", path.display()))
}

impl<'a> CertStore<'a> {
    pub fn new(config: &'a CertConfig) -> Self {
        Self { config }
    }

    /// Where challenge answers are: `<root>/.well-known/acme-challenge/<token>`.
    pub fn challenge_root(&self) -> PathBuf {
        self.config.dir.join("challenges")
    }

    fn site_dir(&self, uri: &str) -> PathBuf {
        self.config.dir.join("sites").join(uri)
    }

    /// The certificate the site's vhost uses, if it has one whose files are there.
    pub fn current(&self, uri: &str) -> Option<Installed> {
        let site = self.site_dir(uri);
        let name = std::fs::read_to_string(site.join("current")).ok()?;
        let name = name.trim();
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None;
        }
        let installed = Self::installed(site.join(name));
        (installed.cert.is_file() && installed.key.is_file()).then_some(installed)
    }

    fn installed(dir: PathBuf) -> Installed {
        Installed { cert: dir.join("fullchain.pem"), key: dir.join("privkey.pem"), dir }
    }

    /// Writes a new certificate and its key into a directory of its own (the key 0600,
    /// written with that mode before it gets its name). Not used until [`Self::make_current`].
    pub fn install(&self, uri: &str, chain_pem: &str, key_pem: &str, info: &CertInfo) -> Result<Installed, StepError> {
        let site = self.site_dir(uri);
        files::ensure_dir(&self.config.dir, 0o755, Ownership::default())?;
        files::ensure_dir(&self.config.dir.join("sites"), 0o700, Ownership::default())?;
        files::ensure_dir(&site, 0o700, Ownership::default())?;
        let name = info.serial.replace(':', "");
        let installed = Self::installed(site.join(if name.is_empty() { "unnamed".to_owned() } else { name }));
        files::ensure_dir(&installed.dir, 0o700, Ownership::default())?;
        files::write(&installed.key, key_pem.as_bytes(), KEY_MODE, Ownership::default())?;
        files::write(&installed.cert, chain_pem.as_bytes(), 0o644, Ownership::default())?;
        Ok(installed)
    }

    /// Marks a certificate as supplied by the site's owner, so that it is never replaced
    /// by an ACME one unless a renewal is asked for.
    pub fn mark_supplied(&self, installed: &Installed) -> Result<(), StepError> {
        files::write(&installed.dir.join(SUPPLIED_MARKER), b"user\n", 0o644, Ownership::default()).map(|_| ())
    }

    /// Where a certificate came from: supplied by the site's owner, or from ACME.
    pub fn source(installed: &Installed) -> CertificateSource {
        if installed.dir.join(SUPPLIED_MARKER).is_file() { CertificateSource::User } else { CertificateSource::Acme }
    }

    /// Makes `installed` the site's certificate and removes the others.
    pub fn make_current(&self, uri: &str, installed: &Installed) -> Result<(), StepError> {
        let site = self.site_dir(uri);
        let name = installed.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        files::write(&site.join("current"), format!("{name}\n").as_bytes(), 0o644, Ownership::default())?;
        let entries = std::fs::read_dir(&site).map_err(|e| io("read", &site, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path != installed.dir {
                files::remove_tree(&path)?;
            }
        }
        Ok(())
    }

    /// Removes a certificate that never went live.
    pub fn discard(&self, installed: &Installed) {
        let _ = files::remove_tree(&installed.dir);
    }

    /// Removes every certificate of the site.
    pub fn remove_site(&self, uri: &str) -> Result<bool, StepError> {
        files::remove_tree(&self.site_dir(uri))
    }

    /// The stored ACME account for the configured directory.
    fn account_path(&self) -> PathBuf {
        let tag: String =
            self.config.acme_directory.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        self.config.dir.join(format!("account-{tag}.json"))
    }

    async fn builder(&self) -> Result<instant_acme::AccountBuilder, String> {
        match &self.config.acme_ca_file {
            Some(ca) => Account::builder_with_root(ca).map_err(|e| {
                format!("cannot use {} as the ACME server's root certificate: {}", ca.display(), chain(&e))
            }),
            None => Account::builder().map_err(|e| format!("cannot set up the ACME client: {}", chain(&e))),
        }
    }

    /// The ACME account: the stored one, or a new one registered and stored (0600).
    async fn account(&self, fresh: bool) -> Result<Account, String> {
        let path = self.account_path();
        if !fresh
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(credentials) = serde_json::from_str::<AccountCredentials>(&text)
        {
            return self
                .builder()
                .await?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("cannot reach the ACME server: {}", chain(&e)));
        }
        let contact = self.config.acme_email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) =
            self.builder().await?.create(&new, self.config.acme_directory.clone(), None).await.map_err(|e| {
                format!("cannot register an ACME account at {}: {}", self.config.acme_directory, chain(&e))
            })?;
        let json = serde_json::to_vec(&credentials).map_err(|e| format!("cannot store the ACME account: {e}"))?;
        files::ensure_dir(&self.config.dir, 0o755, Ownership::default()).map_err(|e| e.reason)?;
        files::write(&path, &json, KEY_MODE, Ownership::default()).map_err(|e| e.reason)?;
        Ok(account)
    }

    /// Orders a certificate for `names` (the first is the site's uri), answering the
    /// HTTP-01 challenges from the challenge directory, which every vhost of the site
    /// serves. Returns the chain and its new key (PEM). The error says what failed, in
    /// the CA's words where it gave some; it never holds key material.
    pub async fn order(&self, names: &[String]) -> Result<(String, String), String> {
        match tokio::time::timeout(ORDER_TIMEOUT, self.order_once(names, false)).await {
            Ok(Err(e)) if e.starts_with(STALE_ACCOUNT) => {
                // A CA that forgot the account (a test CA restarted, an account
                // deactivated): register again once.
                tokio::time::timeout(ORDER_TIMEOUT, self.order_once(names, true))
                    .await
                    .unwrap_or_else(|_| Err(timeout_error()))
            }
            Ok(result) => result,
            Err(_) => Err(timeout_error()),
        }
    }

    async fn order_once(&self, names: &[String], fresh: bool) -> Result<(String, String), String> {
        let account = self.account(fresh).await?;
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            Ok(order) => order,
            Err(instant_acme::Error::Api(problem)) if !fresh && is_account_problem(&problem) => {
                return Err(format!("{STALE_ACCOUNT}: {problem}"));
            }
            Err(e) => return Err(format!("the ACME server refused the order: {}", chain(&e))),
        };
        let challenge_dir = self.challenge_root().join(".well-known").join("acme-challenge");
        files::ensure_dir(&self.config.dir, 0o755, Ownership::default()).map_err(|e| e.reason)?;
        for dir in [self.challenge_root(), self.challenge_root().join(".well-known"), challenge_dir.clone()] {
            files::ensure_dir(&dir, 0o755, Ownership::default()).map_err(|e| e.reason)?;
        }
        let mut written = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(|e| format!("cannot read the order's authorizations: {}", chain(&e)))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(format!("an authorization of the order is {other:?}")),
                }
                let mut challenge = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| "the ACME server offers no http-01 challenge".to_owned())?;
                let token = challenge.token.clone();
                if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err("the ACME server sent a challenge token that is not a safe file name".to_owned());
                }
                let path = challenge_dir.join(&token);
                let answer = challenge.key_authorization();
                files::write(&path, answer.as_str().as_bytes(), 0o644, Ownership::default()).map_err(|e| e.reason)?;
                written.push(path);
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| format!("the ACME server refused the challenge: {}", chain(&e)))?;
            }
            let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
            let status = order
                .poll_ready(&retries)
                .await
                .map_err(|e| format!("the ACME server did not validate {}: {}", names.join(", "), chain(&e)))?;
            if status != OrderStatus::Ready {
                let detail = order.state().error.as_ref().map(ToString::to_string).unwrap_or_default();
                return Err(format!(
                    "the ACME server did not validate {}: order {status:?} {detail}",
                    names.join(", ")
                ));
            }
            let key_pem =
                order.finalize().await.map_err(|e| format!("the ACME server refused the CSR: {}", chain(&e)))?;
            let chain_pem = order
                .poll_certificate(&retries)
                .await
                .map_err(|e| format!("the ACME server issued no certificate: {}", chain(&e)))?;
            Ok((chain_pem, key_pem))
        }
        .await;
        for path in written {
            let _ = files::remove_file(&path);
        }
        result
    }
}

const STALE_ACCOUNT: &str = "the ACME server does not know the stored account";

fn timeout_error() -> String {
    format!("the ACME server did not finish the order within {} s", ORDER_TIMEOUT.as_secs())
}

fn is_account_problem(problem: &instant_acme::Problem) -> bool {
    problem.r#type.as_deref().is_some_and(|t| t.ends_with(":accountDoesNotExist") || t.ends_with(":unauthorized"))
}

/// An error with its causes, which hyper keeps below a terse top line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            let _ = write!(text, ": {next}");
        }
        source = s.source();
    }
    text
}

/// Reads the first certificate of a PEM chain.
pub fn parse(pem: &[u8]) -> Result<CertInfo, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("the certificate is not PEM: {e}"))?;
    let cert = block.parse_x509().map_err(|e| format!("the certificate cannot be read: {e}"))?;
    let not_after = DateTime::<Utc>::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "the certificate's expiry is out of range".to_owned())?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertInfo { not_after, serial: cert.raw_serial_as_string(), issuer: cert.issuer().to_string(), names })
}

/// Reads a certificate file.
pub fn read(path: &Path) -> Result<CertInfo, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for example.com and www.example.com, and its key.
    fn self_signed() -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
            .args(["-subj", "/CN=example.com", "-addext", "subjectAltName=DNS:example.com,DNS:www.example.com"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        (std::fs::read_to_string(cert).unwrap(), std::fs::read_to_string(key).unwrap())
    }

    fn config(dir: &Path) -> CertConfig {
        CertConfig {
            dir: dir.to_path_buf(),
            https_port: 443,
            acme_directory: "https://127.0.0.1:14000/dir".to_owned(),
            acme_ca_file: None,
            acme_email: None,
            renew_days: 30,
        }
    }

    #[test]
    fn a_certificate_tells_its_expiry_serial_and_names() {
        let (cert, _) = self_signed();
        let info = parse(cert.as_bytes()).unwrap();
        assert_eq!(info.names, ["example.com", "www.example.com"]);
        assert!(info.not_after > Utc::now() + chrono::Duration::days(29));
        assert!(!info.serial.is_empty());
        assert!(info.issuer.contains("example.com"));
    }

    #[test]
    fn keys_are_written_0600_and_only_the_current_certificate_stays() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = CertStore::new(&config);
        assert_eq!(store.current("example.com"), None);
        let (cert, key) = self_signed();
        let info = parse(cert.as_bytes()).unwrap();
        let first = store.install("example.com", &cert, &key, &info).unwrap();
        assert_eq!(store.current("example.com"), None, "not current before it is made so");
        store.make_current("example.com", &first).unwrap();
        assert_eq!(store.current("example.com").as_ref(), Some(&first));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&first.key), 0o600);
        assert_eq!(mode(&first.dir), 0o700);

        let (cert2, key2) = self_signed();
        let info2 = parse(cert2.as_bytes()).unwrap();
        let second = store.install("example.com", &cert2, &key2, &info2).unwrap();
        assert_eq!(store.current("example.com").as_ref(), Some(&first), "the old one serves until the switch");
        store.make_current("example.com", &second).unwrap();
        assert_eq!(store.current("example.com").as_ref(), Some(&second));
        assert!(!first.dir.exists(), "the old certificate is removed");
        assert_eq!(mode(&second.key), 0o600);
    }
}
