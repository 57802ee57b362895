//! The dns service: a real BIND (`named`) on a port of its own answers for a site's uri
//! and aliases once the site is installed, follows it to a new uri, and answers no longer
//! once it is deleted. The web server names a separate dns server, whose dns-worker keeps
//! the zone files.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use aegir_e2e::{Options, PATIENCE, System, bin, free_port, random_suffix, start_with_php, wait_for};
use tokio::process::{Child, Command};

/// A `named` of the test's own on 127.0.0.1, reloaded through rndc with a key of its own.
struct Named {
    port: u16,
    /// The dns-worker's directory: zone files and the include named.conf reads.
    zones: PathBuf,
    rndc_conf: PathBuf,
    child: Child,
}

impl Named {
    async fn start(dir: &Path) -> Named {
        let zones = dir.join("zones");
        let work = dir.join("named");
        for d in [&zones, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        // named reads the include at start; the dns-worker writes it on verify.
        std::fs::write(zones.join("named.conf.aegir"), "").unwrap();
        let key = std::process::Command::new("tsig-keygen").arg("aegir-test").output().expect("tsig-keygen runs");
        assert!(key.status.success(), "tsig-keygen failed: {}", String::from_utf8_lossy(&key.stderr));
        let key = String::from_utf8(key.stdout).unwrap();
        let (port, control) = (free_port(), free_port());
        let conf = dir.join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "options {{\n  directory \"{work}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
                 listen-on-v6 {{ none; }};\n  pid-file \"{work}/named.pid\";\n  session-keyfile \"{work}/session.key\";\n  \
                 recursion no;\n  dnssec-validation no;\n}};\n{key}\n\
                 controls {{ inet 127.0.0.1 port {control} allow {{ 127.0.0.1; }} keys {{ \"aegir-test\"; }}; }};\n\
                 include \"{zones}/named.conf.aegir\";\n",
                work = work.display(),
                zones = zones.display(),
            ),
        )
        .unwrap();
        let rndc_conf = dir.join("rndc.conf");
        std::fs::write(
            &rndc_conf,
            format!(
                "{key}\noptions {{ default-key \"aegir-test\"; default-server 127.0.0.1; default-port {control}; }};\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("named.log")).unwrap();
        let child = Command::new("named")
            .arg("-g")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("named runs (apt-get install bind9)");
        let named = Named { port, zones, rndc_conf, child };
        let up = wait_for(PATIENCE, || async {
            let status = Command::new("rndc").arg("-c").arg(&named.rndc_conf).arg("status").output().await;
            status.is_ok_and(|s| s.status.success())
        })
        .await;
        assert!(up, "named did not start: {}", std::fs::read_to_string(dir.join("named.log")).unwrap_or_default());
        named
    }

    /// What `dig +short` says for `name`'s A records.
    async fn dig(&self, name: &str) -> String {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &self.port.to_string(), "+short", "+time=2", "+tries=1", name, "A"])
            .output()
            .await
            .expect("dig runs (apt-get install bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until `name` answers `expected` (a zone reload is done when rndc returns,
    /// but a loaded zone's first answer may still be in flight).
    async fn answers(&self, name: &str, expected: &str) -> bool {
        wait_for(PATIENCE, || async { self.dig(name).await == expected }).await
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The dns-worker of `server`, configured as an operator would.
async fn dns_worker(system: &System, server: &str, named: &Named, zones: &str) -> Child {
    let name = aegir_contract::ServerName::parse(server).unwrap();
    let health = free_port();
    let log = std::fs::File::create(system.dir.path().join("logs").join("dns-worker.log")).unwrap();
    let child = Command::new(bin("dns-worker"))
        .env("AEGIR_AMQP_URL", &system.amqp_url)
        .env("RUST_LOG", "info")
        .env("AEGIR_SERVER", server)
        .env("AEGIR_WORKER_KEY", system.master_key.server(&name).to_hex())
        .env("AEGIR_HEALTH_LISTEN", format!("127.0.0.1:{health}"))
        .env("AEGIR_DNS_DIR", &named.zones)
        .env("AEGIR_DNS_ZONES", zones)
        .env("AEGIR_RNDC_CONFIG", &named.rndc_conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("dns-worker is built (cargo build --workspace --bins)");
    let url = format!("http://127.0.0.1:{health}/healthz");
    let healthy =
        wait_for(PATIENCE, || async { matches!(system.http.get(&url).send().await, Ok(r) if r.status().is_success()) })
            .await;
    assert!(healthy, "dns-worker did not become healthy: {}", system.log_tail("dns-worker"));
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sites_names_answer_from_its_dns_server_once_installed_follow_a_new_uri_and_go_with_the_site() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    let named = Named::start(&system.dir.path().join("dns")).await;
    let ns = format!("server_ns{}", random_suffix());
    let _worker = dns_worker(&system, &ns, &named, "example.com").await;

    // A dns server that does not exist, or one without dns, is refused by name.
    let web = format!("@{}", system.server);
    let save_web = |dns_server: String| {
        let system = &system;
        let web = web.clone();
        async move {
            let port = format!("--http_port={}", system.http_port);
            let master_db = format!("--master_db={}", aegir_e2e::mariadb_url());
            let dns_server = format!("--dns_server={dns_server}");
            let args = [
                "save",
                web.as_str(),
                "--context_type=server",
                "--remote_host=127.0.0.1",
                "--http_service_type=nginx",
                port.as_str(),
                "--db_service_type=mariadb",
                master_db.as_str(),
                dns_server.as_str(),
            ];
            system.cli(&args).await
        }
    };
    let out = save_web(format!("@{ns}")).await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains(&format!("`@{ns}` does not exist")), "{out}");

    system.cli_ok(&["save", &format!("@{ns}"), "--context_type=server", "--dns_service_type=bind"]).await;
    let out = save_web(format!("@{ns}")).await;
    assert_eq!(out.code, Some(0), "{out}");
    let out = system.cli_ok(&[&format!("@{ns}"), "verify"]).await;
    assert!(out.contains("dns server verify"), "{out}");
    let shown = system.cli_ok(&["show", &format!("@{ns}")]).await;
    assert!(shown.contains("bind (BIND 9."), "the verify reported BIND's version: {shown}");
    let shown = system.cli_ok(&["show", &web]).await;
    assert!(shown.contains(&format!("@{ns}")), "the web server shows its dns server: {shown}");
    system.cli_ok(&[&web, "verify"]).await;
    system.wordpress_platform("wp").await;

    // The uri and one alias are in the configured zone; the other alias is a domain of
    // the customer's own, which gets a zone of its own.
    let suffix = random_suffix();
    let uri = format!("dns-{suffix}.example.com");
    let alias = format!("www.dns-{suffix}.example.com");
    let own = format!("shop-{suffix}.test");
    let site = format!("@{uri}");
    system
        .cli_ok(&[
            "save",
            &site,
            "--context_type=site",
            "--platform=@platform_wp",
            &format!("--db_server=@{}", system.server),
            "--title=DNS site",
            &format!("--aliases={alias},{own}"),
        ])
        .await;
    let out = system.cli_ok(&[&site, "install"]).await;
    assert!(out.contains("site dns add"), "{out}");
    for name in [&uri, &alias, &own] {
        assert!(named.answers(name, "127.0.0.1").await, "{name} answers the web server's address");
    }
    let (status, body) = aegir_e2e::fetch_showing(&uri, system.http_port, "DNS site", true).await;
    assert_eq!(status, 200, "the site answers on its web server: {body}");
    let include = std::fs::read_to_string(named.zones.join("named.conf.aegir")).unwrap();
    assert!(include.contains("zone \"example.com\"") && include.contains(&format!("zone \"{own}\"")), "{include}");

    // Moved to another uri, the site's records follow it; its aliases keep answering.
    let moved = format!("moved-{suffix}.example.com");
    let out = system.cli_ok(&[&site, "migrate", &format!("--new_uri={moved}")]).await;
    assert!(out.contains("site dns add") && out.contains("site dns remove"), "{out}");
    assert!(named.answers(&moved, "127.0.0.1").await, "the new uri answers");
    assert!(named.answers(&uri, "").await, "the old uri no longer answers: {}", named.dig(&uri).await);
    for name in [&alias, &own] {
        assert_eq!(named.dig(name).await, "127.0.0.1", "{name} still answers");
    }

    let site = format!("@{moved}");
    let out = system.cli_ok(&[&site, "delete"]).await;
    assert!(out.contains("site dns remove"), "{out}");
    for name in [&moved, &alias, &own] {
        assert!(named.answers(name, "").await, "{name} no longer answers: {}", named.dig(name).await);
    }
    assert!(!named.zones.join(format!("db.{own}")).exists(), "the customer's own zone went with its last record");
    assert!(named.zones.join("db.example.com").exists(), "the configured zone stays");
    let include = std::fs::read_to_string(named.zones.join("named.conf.aegir")).unwrap();
    assert!(!include.contains(&own), "{include}");
}
