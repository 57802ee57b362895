//! HTTPS per site against a real ACME server: Debian's pebble on loopback, validating
//! HTTP-01 challenges on the site's own http port (names resolved to 127.0.0.1 by
//! pebble-challtestsrv's DNS). A site saved with `--ssl=forced` gets a certificate at
//! install and answers over https; http redirects there; a renewal asked for early
//! replaces the certificate while requests keep being answered; with pebble stopped a
//! renewal fails, the site keeps its certificate and shows the failure, and the renewal
//! queue's retry succeeds once pebble is back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aegir_e2e::{
    Apache, Options, PATIENCE, System, fetch, free_port, mariadb_url, new_site, random_suffix, start_with_php,
    wait_for, web_server, write_tree,
};
use serde_json::Value;

/// pebble and its DNS, each a child process of the test.
struct Pebble {
    dir: tempfile::TempDir,
    acme_port: u16,
    mgmt_port: u16,
    dns_port: u16,
    pebble: Option<Child>,
    dns: Option<Child>,
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(status.expect("openssl runs").success(), "openssl {args:?} failed");
}

impl Pebble {
    /// Pebble's config and the TLS certificate of its own API, from a CA of the test's
    /// (`ca_file`); [`Pebble::start`] runs it.
    fn new() -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pebble test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("wfe.key"),
            "-out",
            &p("wfe.csr"),
        ]);
        std::fs::write(
            dir.path().join("wfe.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("wfe.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("wfe.ext"),
            "-out",
            &p("wfe.pem"),
        ]);
        let (acme_port, mgmt_port, dns_port) = (free_port(), free_port(), free_port());
        Pebble { dir, acme_port, mgmt_port, dns_port, pebble: None, dns: None }
    }

    /// Runs pebble validating HTTP-01 on `http_port`, and its DNS.
    fn start(&mut self, http_port: u16) {
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        let (acme_port, mgmt_port, dns_port) = (self.acme_port, self.mgmt_port, self.dns_port);
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": p("wfe.pem"),
            "privateKey": p("wfe.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(self.dir.path().join("pebble.json"), config.to_string()).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("dns.log")).unwrap())
            .spawn()
            .expect("pebble-challtestsrv runs (apt-get install pebble)");
        self.dns = Some(dns);
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates its challenges again: each renewal goes through HTTP-01.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble runs (apt-get install pebble)");
        self.pebble = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}\n--- dns:\n{}", read("pebble.log"), read("dns.log"))
    }

    /// Waits for pebble's API, then fetches the root its certificates chain to (a new one
    /// each time pebble starts) into a file for curl.
    async fn root(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let url = format!("https://127.0.0.1:{}/roots/0", self.mgmt_port);
        let ca = self.ca_file();
        let fetched = wait_for(Duration::from_secs(30), || {
            let (url, ca, path) = (url.clone(), ca.clone(), path.clone());
            async move {
                let out = tokio::process::Command::new("curl")
                    .args(["-sf", "--cacert"])
                    .arg(&ca)
                    .arg(&url)
                    .output()
                    .await
                    .unwrap();
                out.status.success()
                    && out.stdout.starts_with(b"-----BEGIN CERTIFICATE")
                    && std::fs::write(&path, &out.stdout).is_ok()
            }
        })
        .await;
        assert!(fetched, "pebble's management interface answers:\n{}", self.log());
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut child) = self.dns.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET https://<host>:<port>/` through curl trusting only `root`: status and body.
async fn fetch_https(host: &str, port: u16, root: &Path) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code}", &format!("https://{host}:{port}/")])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The serial of the certificate the web server presents for `host` (hex, upper case,
/// without leading zeros).
async fn served_serial(host: &str, port: u16) -> String {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    let mut x509 = tokio::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = x509.stdin.take().unwrap();
        stdin.write_all(&out.stdout).await.unwrap();
    }
    let out = x509.wait_with_output().await.unwrap();
    let serial = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").to_uppercase();
    serial.trim_start_matches('0').to_owned()
}

/// The API's serial (`00:aa:bb:…`) in the form `served_serial` gives (`AABB…`): the API
/// keeps the sign byte DER puts before a serial whose top bit is set, and
/// `openssl x509 -serial` leaves it out.
fn plain_serial(site: &Value) -> String {
    let serial = site["ssl_serial"].as_str().unwrap_or_default().replace(':', "").to_uppercase();
    serial.trim_start_matches('0').to_owned()
}

/// Saves and verifies `@platform_<name>` on the system's server: one `index.php` that
/// prints a marker made of `what` and a random suffix, which is returned.
async fn marker_platform(system: &aegir_e2e::System, name: &str, what: &str) -> String {
    let marker = format!("{what} {}", random_suffix());
    let root = system.platforms_dir().join(name);
    write_tree(&root, &[("index.php", &format!("<?php echo '{marker}';\n"))]);
    let root_arg = format!("--root={}", root.display());
    let web = format!("--web_server=@{}", system.server);
    let platform = format!("@platform_{name}");
    system.cli_ok(&["save", &platform, "--context_type=platform", &root_arg, &web]).await;
    system.cli_ok(&[&platform, "verify"]).await;
    marker
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_ssl_site_gets_renews_and_keeps_its_certificate_through_acme_failures() {
    let https_port = free_port();
    let mut pebble = Pebble::new();
    let options = Options::default()
        .env("http-worker", "AEGIR_ACME_DIRECTORY", &pebble.directory())
        .env("http-worker", "AEGIR_ACME_CA_FILE", pebble.ca_file().to_str().unwrap())
        .env("http-worker", "AEGIR_HTTPS_PORT", &https_port.to_string())
        // The renewal queue looks every second and retries two seconds after a failure.
        .env("task-api", "AEGIR_CERT_INTERVAL_SECS", "1")
        .env("task-api", "AEGIR_CERT_RETRY_SECS", "2");
    let (system, _fpm) = start_with_php(options).await;
    let http_port = system.http_port;
    pebble.start(http_port);
    let root1 = pebble.root("root1.pem").await;
    system.server_ready().await;

    let marker = marker_platform(&system, "app", "secure page").await;

    let uri = format!("tls-{}.example.com", random_suffix());
    let site = format!("@{uri}");
    let db = format!("--db_server=@{}", system.server);
    system.cli_ok(&["save", &site, "--context_type=site", "--platform=@platform_app", &db, "--ssl=forced"]).await;
    let installed = system.cli(&[&site, "install"]).await;
    assert_eq!(installed.code, Some(0), "install failed: {installed}\npebble:\n{}", pebble.log());

    // The certificate: valid, from pebble, shown by the API and the CLI.
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["ssl"], "forced", "{view}");
    assert_eq!(view["ssl_status"], "valid", "{view}");
    assert!(view["ssl_issuer"].as_str().unwrap_or_default().contains("Pebble"), "{view}");
    assert!(view["ssl_error"].is_null(), "{view}");
    let first = plain_serial(&view);
    let shown = system.cli_ok(&["show", &site]).await;
    assert!(shown.contains("forced, certificate valid"), "{shown}");

    // https answers with the site's content, trusted through pebble's root only.
    let (status, body) = fetch_https(&uri, https_port, &root1).await;
    assert_eq!((status, body.as_str()), (200, marker.as_str()));
    assert_eq!(served_serial(&uri, https_port).await, first);
    // http redirects to https.
    let (status, _, location) = fetch(&uri, http_port, "/some/page?x=1", false).await;
    assert_eq!(status, 301);
    assert_eq!(location, format!("https://{uri}:{https_port}/some/page?x=1"));

    // The key is the web server's alone, and no key material reaches the task logs.
    let site_certs = system.config_dir().join("ssl/sites").join(&uri);
    let current = std::fs::read_to_string(site_certs.join("current")).unwrap();
    let key = site_certs.join(current.trim()).join("privkey.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let (_, tasks) = system.get(&format!("/api/v1/tasks?context=@{uri}")).await;
    let ids: Vec<String> =
        tasks["items"].as_array().into_iter().flatten().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect();
    assert!(!ids.is_empty(), "{tasks}");
    for id in &ids {
        for (_, _, message) in system.task_log(id).await {
            assert!(!message.contains("PRIVATE KEY"), "a key in the task log: {message}");
        }
    }

    // A renewal asked for early replaces the certificate; requests keep being answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (stop, answered, failed, uri, root1, marker) =
            (stop.clone(), answered.clone(), failed.clone(), uri.clone(), root1.clone(), marker.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match fetch_https(&uri, https_port, &root1).await {
                    (200, body) if body == marker => answered.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let renewed = system.cli(&[&site, "verify", "--renew"]).await;
    assert_eq!(renewed.code, Some(0), "{renewed}");
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during the renewal");
    assert!(answered.load(Ordering::Relaxed) > 0);
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    let second = plain_serial(&view);
    assert_ne!(second, first, "the renewal replaced the certificate: {view}");
    // nginx workers from before the reload may answer a last handshake with the old one.
    let served = wait_for(Duration::from_secs(15), || async { served_serial(&uri, https_port).await == second }).await;
    assert!(served, "the renewed certificate is the one served");

    // pebble stopped: the renewal fails, the site keeps its certificate and shows why.
    pebble.stop();
    let failed_renewal = system.cli(&[&site, "verify", "--renew"]).await;
    assert!(failed_renewal.stdout.contains("certificate order failed"), "{failed_renewal}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["ssl_status"], "failing", "{view}");
    assert!(!view["ssl_error"].as_str().unwrap_or_default().is_empty(), "{view}");
    assert!(view["ssl_retry_at"].is_string(), "{view}");
    assert_eq!(plain_serial(&view), second, "the API still shows the certificate in use");
    let shown = system.cli_ok(&["show", &site]).await;
    assert!(shown.contains("last order failed") && shown.contains("next try"), "{shown}");
    let (status, body) = fetch_https(&uri, https_port, &root1).await;
    assert_eq!((status, body.as_str()), (200, marker.as_str()), "the old certificate still serves");
    assert_eq!(served_serial(&uri, https_port).await, second);

    // pebble back (with a new root): the renewal queue's retry gets a new certificate.
    pebble.spawn();
    let root2 = pebble.root("root2.pem").await;
    let recovered = wait_for(Duration::from_secs(120), || async {
        let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
        view["ssl_status"] == "valid" && plain_serial(&view) != second
    })
    .await;
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert!(recovered, "no retry succeeded: {view}\npebble:\n{}", pebble.log());
    assert!(view["ssl_error"].is_null() && view["ssl_retry_at"].is_null(), "{view}");
    let third = plain_serial(&view);
    assert!(wait_for(Duration::from_secs(10), || async { served_serial(&uri, https_port).await == third }).await);
    let (status, body) = fetch_https(&uri, https_port, &root2).await;
    assert_eq!((status, body.as_str()), (200, marker.as_str()));
}

/// A CA of the test's own, and certificates it signs, made with openssl in `dir`.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa { dir };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Owner test CA",
            "-keyout",
            &ca.path("ca.key"),
            "-out",
            &ca.path("ca.pem"),
        ]);
        ca
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A certificate for `names`, valid for `days`: `(<name>.pem, <name>.key)`, the PEM
    /// holding the certificate then the CA's, as a chain is given.
    fn issue(&self, name: &str, names: &[&str], days: u32) -> (String, String) {
        let (key, csr, ext, cert) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.ext")),
            self.path(&format!("{name}.crt")),
        );
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={}", names[0]),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            &ext,
            format!("subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n", san.join(",")),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.pem"),
            "-CAkey",
            &self.path("ca.key"),
            "-CAcreateserial",
            "-days",
            &days.to_string(),
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        let chain = self.path(&format!("{name}.pem"));
        let text = std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(self.path("ca.pem")).unwrap();
        std::fs::write(&chain, text).unwrap();
        (chain, key)
    }
}

/// `PUT` to the API: status and JSON body.
async fn put(system: &aegir_e2e::System, path: &str, body: Value) -> (u16, Value) {
    let response = system.http.put(format!("{}{path}", system.api)).json(&body).send().await.expect("API reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_serves_the_certificate_its_owner_supplied_and_a_wrong_one_changes_nothing() {
    let https_port = free_port();
    // No ACME server: a supplied certificate never needs one.
    let options = Options::default().env("http-worker", "AEGIR_HTTPS_PORT", &https_port.to_string()).env(
        "http-worker",
        "AEGIR_ACME_DIRECTORY",
        &format!("https://127.0.0.1:{}/dir", free_port()),
    );
    let (system, _fpm) = start_with_php(options).await;
    system.server_ready().await;

    let marker = marker_platform(&system, "own", "owner certificate page").await;

    let uri = format!("own-{}.example.com", random_suffix());
    let alias = format!("www.{uri}");
    let site = format!("@{uri}");
    let db = format!("--db_server=@{}", system.server);
    let save = ["save", &site, "--context_type=site", "--platform=@platform_own", &db, &format!("--aliases={alias}")];
    system.cli_ok(&save).await;
    system.cli_ok(&[&site, "install"]).await;
    let (status, body, _) = fetch(&uri, system.http_port, "/", false).await;
    let nginx_log = std::fs::read_to_string(system.nginx_error_log()).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, marker.as_str()), "http before https; nginx: {nginx_log}");
    let mut with_ssl = save.to_vec();
    with_ssl.push("--ssl=on");
    system.cli_ok(&with_ssl).await;

    let ca = TestCa::new();
    // Valid for 10 days: inside the 30-day renewal window, so it shows as expiring.
    let (chain, key) = ca.issue("site", &[&uri, &alias], 10);
    let (_, other_key) = ca.issue("other", &[&uri, &alias], 10);
    let (wrong_chain, wrong_key) = ca.issue("wrong", &[&uri, "elsewhere.example.com"], 10);
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    let key_pem = read(&key);
    // A line from the middle of the key: what would leak if any of it were shown.
    let key_line = key_pem.lines().nth(1).unwrap().to_owned();

    // Refused with 422, naming the field, and nothing changes: no task, no certificate.
    let (_, before) = system.get(&format!("/api/v1/tasks?context={site}")).await;
    let path = format!("/api/v1/sites/{uri}/certificate");
    let (status, body) =
        put(&system, &path, serde_json::json!({"certificate": read(&chain), "key": read(&other_key)})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "key", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not belong to the certificate"), "{body}");
    let (status, body) =
        put(&system, &path, serde_json::json!({"certificate": read(&wrong_chain), "key": read(&wrong_key)})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "certificate", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("not for {alias}")), "{body}");
    let (status, body) = put(&system, &path, serde_json::json!({"certificate": "nothing", "key": key_pem})).await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(&key_line), "the key in an error: {body}");
    let refused = system.cli(&[&site, "certificate", "--cert", &chain, "--key", &other_key]).await;
    assert_eq!(refused.code, Some(3), "{refused}");
    assert!(refused.stderr.contains("does not belong"), "{refused}");
    let (_, after) = system.get(&format!("/api/v1/tasks?context={site}")).await;
    assert_eq!(after["total"], before["total"], "a refused certificate queues no task");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["ssl_status"], "pending", "{view}");
    assert!(view["ssl_source"].is_null(), "{view}");
    assert!(!system.config_dir().join("ssl/sites").join(&uri).join("current").exists());

    // Accepted: installed by a verify, served over https, trusted through the test CA.
    let out = system.cli(&[&site, "certificate", "--cert", &chain, "--key", &key]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("certificate its owner supplied"), "{out}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["ssl_source"], "user", "{view}");
    assert_eq!(view["ssl_status"], "expiring", "a supplied certificate near its end shows so: {view}");
    assert!(view["ssl_issuer"].as_str().unwrap_or_default().contains("Owner test CA"), "{view}");
    assert!(view["ssl_expires_at"].is_string(), "{view}");
    let shown = system.cli_ok(&["show", &site]).await;
    assert!(shown.contains("not renewed here"), "{shown}");
    let ca_file = PathBuf::from(ca.path("ca.pem"));
    for host in [&uri, &alias] {
        let (status, body) = fetch_https(host, https_port, &ca_file).await;
        assert_eq!((status, body.as_str()), (200, marker.as_str()), "https of {host}");
    }
    let serial = plain_serial(&view);
    assert_eq!(served_serial(&uri, https_port).await, serial);

    // A verify keeps it: no ACME order (there is no ACME server), same certificate.
    let verified = system.cli(&[&site, "verify"]).await;
    assert_eq!(verified.code, Some(0), "{verified}");
    assert!(verified.stdout.contains("not renewed by this system"), "{verified}");
    assert!(!verified.stdout.contains("ordering a certificate"), "{verified}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!((view["ssl_source"].as_str(), plain_serial(&view)), (Some("user"), serial.clone()), "{view}");
    assert!(view["ssl_error"].is_null(), "{view}");

    // Disabled, the site's page still answers ACME challenges (over http, where HTTP-01
    // checks them), and https serves the disabled page with the same certificate.
    system.cli_ok(&[&site, "disable"]).await;
    let challenges = system.config_dir().join("ssl/challenges/.well-known/acme-challenge");
    std::fs::create_dir_all(&challenges).unwrap();
    std::fs::write(challenges.join("token-disabled"), "proof-disabled").unwrap();
    let (status, body, _) = fetch(&uri, system.http_port, "/.well-known/acme-challenge/token-disabled", false).await;
    assert_eq!((status, body.as_str()), (200, "proof-disabled"), "a disabled site answers ACME challenges");
    // nginx workers from before the reload may answer a last request with the site.
    let disabled = wait_for(Duration::from_secs(15), || async {
        let (status, body) = fetch_https(&uri, https_port, &ca_file).await;
        status == 503 && body.contains("Site disabled")
    })
    .await;
    assert!(disabled, "https serves the disabled page: {:?}", fetch_https(&uri, https_port, &ca_file).await);
    system.cli_ok(&[&site, "enable"]).await;

    // The key is on the web server only, 0600, and nowhere the API or the logs show.
    let site_certs = system.config_dir().join("ssl/sites").join(&uri);
    let current = std::fs::read_to_string(site_certs.join("current")).unwrap();
    let stored = site_certs.join(current.trim()).join("privkey.pem");
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), key_pem);
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    let (_, tasks) = system.get(&format!("/api/v1/tasks?context={site}")).await;
    for shown in [view.to_string(), tasks.to_string()] {
        assert!(!shown.contains("PRIVATE KEY") && !shown.contains(&key_line), "a key in the API: {shown}");
    }
    for id in tasks["items"].as_array().unwrap().iter().filter_map(|t| t["id"].as_str()) {
        for (_, _, message) in system.task_log(id).await {
            assert!(!message.contains("PRIVATE KEY") && !message.contains(&key_line), "a key in the log: {message}");
        }
    }
    // Once its task ended, the request that carried the key is gone from PostgreSQL.
    let kept: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM scheduler.tasks WHERE request::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM scheduler.outbox WHERE position(convert_to($1, 'UTF8') in body) > 0)
              + (SELECT count(*) FROM public.tasks WHERE options::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM public.outbox WHERE position(convert_to($1, 'UTF8') in body) > 0)",
    )
    .bind(&key_line)
    .fetch_one(&system.pg)
    .await
    .unwrap();
    assert_eq!(kept, 0, "the key is still stored in PostgreSQL");

    // A renewal asked for switches the site to ACME (which, unreachable here, fails and
    // leaves the supplied certificate serving).
    let renewed = system.cli(&[&site, "verify", "--renew"]).await;
    assert!(renewed.stdout.contains("replaced by one from ACME"), "{renewed}");
    let (status, body) = fetch_https(&uri, https_port, &ca_file).await;
    assert_eq!((status, body.as_str()), (200, marker.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_ssl_site_on_apache_serves_its_supplied_certificate_over_https_until_it_is_removed_for_acme() {
    let https_port = free_port();
    let mut pebble = Pebble::new();
    let acme = pebble.directory();
    let (mut system, fpm) = start_with_php(Options::default()).await;

    // An apache loading mod_ssl (as Debian's does after `a2enmod ssl`), driven by the
    // http-worker through its main config.
    let apache_port = free_port();
    let apache = Apache::start(system.dir.path(), &system.config_dir(), apache_port);
    let (conf, socket, https) =
        (apache.conf.display().to_string(), fpm.socket.display().to_string(), https_port.to_string());
    system.kill9("http-worker").await;
    system.respawn_with(
        "http-worker",
        &[
            ("AEGIR_APACHE_CONF", conf.as_str()),
            ("AEGIR_PHP_FPM_SOCKET", socket.as_str()),
            ("AEGIR_HTTPS_PORT", https.as_str()),
            ("AEGIR_ACME_DIRECTORY", acme.as_str()),
            ("AEGIR_ACME_CA_FILE", pebble.ca_file().to_str().unwrap()),
        ],
    );
    system.wait_healthy("http-worker").await;
    // pebble validates its HTTP-01 challenges on apache's port.
    pebble.start(apache_port);
    let root = pebble.root("root.pem").await;
    let server = format!("@{}", system.server);
    let http_port = format!("--http_port={apache_port}");
    let master_db = format!("--master_db={}", mariadb_url());
    let save_server =
        ["save", &server, "--context_type=server", "--remote_host=localhost", "--http_service_type=apache"];
    system.cli_ok(&[&save_server[..], &[&http_port, "--db_service_type=mariadb", &master_db]].concat()).await;
    let verified = system.cli_ok(&[&server, "verify"]).await;
    assert!(verified.contains("apache loads mod_ssl"), "{verified}");

    let marker = marker_platform(&system, "apache_tls", "apache https page").await;

    let uri = format!("apache-{}.example.com", random_suffix());
    let alias = format!("www.{uri}");
    let site = format!("@{uri}");
    let db = format!("--db_server={server}");
    let aliases = format!("--aliases={alias}");
    let save = ["save", &site, "--context_type=site", "--platform=@platform_apache_tls", &db, &aliases];
    system.cli_ok(&save).await;
    system.cli_ok(&[&site, "install"]).await;
    let (status, body, _) = fetch(&uri, apache_port, "/", false).await;
    let apache_log = || std::fs::read_to_string(system.dir.path().join("apache/error.log")).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, marker.as_str()), "http before https; apache: {}", apache_log());
    system.cli_ok(&[&save[..], &["--ssl=forced"]].concat()).await;

    let ca = TestCa::new();
    let (chain, key) = ca.issue("apache", &[&uri, &alias], 60);
    let out = system.cli(&[&site, "certificate", "--cert", &chain, "--key", &key]).await;
    assert_eq!(out.code, Some(0), "{out}\napache: {}", apache_log());
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!((view["ssl_source"].as_str(), view["ssl_status"].as_str()), (Some("user"), Some("valid")), "{view}");

    // https answers with the site's content for its uri and alias, trusted through the
    // test CA only, with the supplied certificate.
    let ca_file = PathBuf::from(ca.path("ca.pem"));
    for host in [&uri, &alias] {
        let (status, body) = fetch_https(host, https_port, &ca_file).await;
        assert_eq!((status, body.as_str()), (200, marker.as_str()), "https of {host}; apache: {}", apache_log());
    }
    assert_eq!(served_serial(&uri, https_port).await, plain_serial(&view));
    // http redirects to https, keeping the path and query.
    let (status, _, location) = fetch(&uri, apache_port, "/some/page?x=1", false).await;
    assert_eq!((status, location.as_str()), (301, format!("https://{uri}:{https_port}/some/page?x=1").as_str()));

    // Removed: a verify orders a certificate from ACME in its place, which serves; the
    // supplied certificate and its key are gone from the web server.
    let supplied_key = std::fs::read_to_string(&key).unwrap();
    let removed = system.cli(&[&site, "certificate", "--remove"]).await;
    assert_eq!(removed.code, Some(0), "{removed}\npebble:\n{}\napache: {}", pebble.log(), apache_log());
    assert!(removed.stdout.contains("replaced by one from ACME"), "{removed}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!((view["ssl_source"].as_str(), view["ssl_status"].as_str()), (Some("acme"), Some("valid")), "{view}");
    assert!(view["ssl_issuer"].as_str().unwrap_or_default().contains("Pebble"), "{view}");
    let acme_serial = plain_serial(&view);
    assert!(wait_for(Duration::from_secs(15), || async { served_serial(&uri, https_port).await == acme_serial }).await);
    for host in [&uri, &alias] {
        let (status, body) = fetch_https(host, https_port, &root).await;
        assert_eq!((status, body.as_str()), (200, marker.as_str()), "https of {host} with the ACME certificate");
    }
    let site_certs = system.config_dir().join("ssl/sites").join(&uri);
    let mut files = vec![site_certs.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains(supplied_key.trim()), "the supplied key is still at {}", path.display());
        }
    }

    // Nothing supplied is left to remove; an unknown site is not found.
    let system = &system;
    let answer = |path: String| async move {
        let response = system.http.delete(format!("{}{path}", system.api)).send().await.expect("API reachable");
        (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = answer(format!("/api/v1/sites/{uri}/certificate")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("nothing to remove"), "{body}");
    let (status, body) = answer("/api/v1/sites/nowhere.example.com/certificate".to_owned()).await;
    assert_eq!(status, 404, "{body}");
    drop(apache);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_step_carrying_a_supplied_key_is_kept_in_the_dead_letters_without_the_key() {
    use aegir_contract::{
        HttpServiceType, Lane, Message, PlatformType, Secret, SslMode, StepAction, StepDispatched, SuppliedCertificate,
    };
    use lapin::options::{BasicAckOptions, BasicGetOptions};

    let system = System::start().await;
    let server = web_server(&system, HttpServiceType::Nginx, system.http_port);
    let mut site = new_site(&server, &system.platforms_dir().join("dead"), PlatformType::Wordpress, "dead");
    site.ssl = SslMode::On;
    let ca = TestCa::new();
    let (chain, key) = ca.issue("dead", &[site.uri.as_str()], 10);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap().to_owned();
    let supplied = SuppliedCertificate { chain: std::fs::read_to_string(&chain).unwrap(), key: Secret::new(key_pem) };
    let action = StepAction::SiteCertificate { site, renew: false, supplied: Some(supplied) };
    let task_id = uuid::Uuid::now_v7();
    let step = StepDispatched {
        task_id,
        step: 1,
        attempt: 0,
        route: action.route(),
        lane: Lane::Interactive,
        action,
        dispatched_at: chrono::Utc::now(),
    };
    assert!(String::from_utf8_lossy(&step.encode()).contains(&key_line), "the step carries the key");

    // Unsigned, so the worker refuses it and keeps it for operators.
    let dead_before = system.queue_depth("aegir.dead-letters").await;
    aegir_amqp::Broker::new(system.amqp_url.clone(), "forger").publish(&step).await.unwrap();
    let dead = wait_for(PATIENCE, || async { system.queue_depth("aegir.dead-letters").await > dead_before }).await;
    assert!(dead, "the refused step is kept in the dead letters");
    let channel = system.channel().await;
    let mut kept = None;
    while let Some(message) = channel.basic_get("aegir.dead-letters".into(), BasicGetOptions::default()).await.unwrap()
    {
        message.delivery.ack(BasicAckOptions::default()).await.unwrap();
        let text = String::from_utf8_lossy(&message.delivery.data).into_owned();
        if text.contains(&task_id.to_string()) {
            kept = Some(text);
        }
    }
    let kept = kept.expect("the dead letter of the refused step");
    assert!(!kept.contains("PRIVATE KEY") && !kept.contains(&key_line), "the key in the dead letters: {kept}");
    assert!(kept.contains(aegir_amqp::dead_letter::REMOVED), "{kept}");
    assert!(kept.contains("BEGIN CERTIFICATE"), "the rest of the step is kept: {kept}");
}
