//! BIND 9: one zone file per zone in the worker's directory, each checked with
//! `named-checkzone` before it replaces the old one; a `named.conf` include that lists
//! them; `rndc` to load new zones and reload changed ones.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegir_contract::{ServerContext, SiteContext, StepFacts};
use aegir_worker::command::{self, CommandOutput};
use aegir_worker::{StepError, StepLog};
use std::future::Future;
use tokio::sync::Mutex;

use crate::zone::{self, Record, ZoneSettings, ZoneState};

const TIMEOUT: Duration = Duration::from_secs(60);
pub const INCLUDE_FILE: &str = "named.conf.aegir";

#[derive(Debug, clap::Args)]
pub struct BindArgs {
    /// Where the zone files, the records they are written from and the `named.conf`
    /// include (`named.conf.aegir`, for the name server's own named.conf) are kept.
    #[arg(long, env = "AEGIR_DNS_DIR", default_value = "/var/lib/aegir/dns")]
    pub dns_dir: PathBuf,
    /// The zones this name server holds (comma-separated, e.g. `example.com,example.org`):
    /// a site's names go into the longest one they are in; a name outside all of them
    /// gets a zone of its own.
    #[arg(long, env = "AEGIR_DNS_ZONES", value_delimiter = ',')]
    pub dns_zones: Vec<String>,
    /// The name server named in the zones' SOA and NS records; default: the server's
    /// `remote_host` when it is a host name, else `localhost`.
    #[arg(long, env = "AEGIR_DNS_NAMESERVER")]
    pub dns_nameserver: Option<String>,
    /// The time to live of the records, in seconds.
    #[arg(long, env = "AEGIR_DNS_TTL", default_value_t = 300)]
    pub dns_ttl: u32,
    /// The `rndc` program that tells the name server to load the zones.
    #[arg(long, env = "AEGIR_RNDC", default_value = "rndc")]
    pub rndc: String,
    /// An `rndc.conf` naming the server, port and key (`rndc -c`); default: rndc's own.
    #[arg(long, env = "AEGIR_RNDC_CONFIG")]
    pub rndc_config: Option<PathBuf>,
}

/// Where a step's lines go: the task's log (a list in tests).
pub trait Notes: Sync {
    fn info(&self, message: String) -> impl Future<Output = ()> + Send;
}

impl Notes for StepLog {
    async fn info(&self, message: String) {
        StepLog::info(self, message).await
    }
}

pub struct Bind {
    dir: PathBuf,
    zones: Vec<String>,
    nameserver: Option<String>,
    ttl: u32,
    rndc: String,
    rndc_config: Option<PathBuf>,
    /// One change of the zones at a time: steps of several sites may share a zone.
    lock: Mutex<()>,
}

impl Bind {
    pub fn new(args: BindArgs) -> anyhow::Result<Bind> {
        let mut zones = Vec::new();
        for zone in args.dns_zones.iter().map(|z| z.trim().trim_end_matches('.').to_ascii_lowercase()) {
            if zone.is_empty() {
                continue;
            }
            aegir_contract::SiteUri::parse(&zone)
                .map_err(|e| anyhow::anyhow!("AEGIR_DNS_ZONES: `{zone}` is not a zone name: {e}"))?;
            zones.push(zone);
        }
        if let Some(ns) = &args.dns_nameserver {
            aegir_contract::HostName::parse(ns.trim_end_matches('.'))
                .map_err(|e| anyhow::anyhow!("AEGIR_DNS_NAMESERVER: {e}"))?;
        }
        let dir = args.dns_dir;
        if !dir.is_absolute() || dir.to_str().is_none_or(|d| d.contains(['"', '\\', '\n'])) {
            anyhow::bail!("AEGIR_DNS_DIR must be an absolute path without quotes: {}", dir.display());
        }
        Ok(Bind {
            dir,
            zones,
            nameserver: args.dns_nameserver.map(|n| n.trim_end_matches('.').to_owned()),
            ttl: args.dns_ttl,
            rndc: args.rndc,
            rndc_config: args.rndc_config,
            lock: Mutex::new(()),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (zones: {})",
            self.dir.display(),
            if self.zones.is_empty() { "none".into() } else { self.zones.join(",") }
        )
    }

    fn settings(&self, server: &ServerContext) -> ZoneSettings {
        let host = server.remote_host.as_str();
        let nameserver = self
            .nameserver
            .clone()
            .unwrap_or_else(|| if host.parse::<IpAddr>().is_ok() { "localhost".to_owned() } else { host.to_owned() });
        ZoneSettings { nameserver, ttl: self.ttl }
    }

    fn records_dir(&self) -> PathBuf {
        self.dir.join("records")
    }

    fn state_path(&self, zone: &str) -> PathBuf {
        self.records_dir().join(format!("{zone}.json"))
    }

    fn zone_path(&self, zone: &str) -> PathBuf {
        self.dir.join(zone::zone_file_name(zone))
    }

    /// Checks the tools and the directory, writes the zone files of the configured zones
    /// and the include, and asks the name server to load them.
    pub async fn verify(&self, server: &ServerContext, log: &impl Notes) -> Result<StepFacts, StepError> {
        let _guard = self.lock.lock().await;
        let version = run("named-checkzone", ["-v"]).await?;
        let version = format!("BIND {}", version.stdout.trim());
        log.info(format!("zone files are checked with named-checkzone of {version}")).await;
        for dir in [self.dir.clone(), self.records_dir()] {
            tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                StepError::permanent(format!(
                    "cannot create {}: {e}; give the dns-worker's user that directory",
                    dir.display()
                ))
            })?;
        }
        let probe = self.dir.join(".aegir-write-check");
        tokio::fs::write(&probe, b"").await.map_err(|e| {
            StepError::permanent(format!(
                "{} is not writable: {e}; give the dns-worker's user that directory",
                self.dir.display()
            ))
        })?;
        let _ = tokio::fs::remove_file(&probe).await;
        let settings = self.settings(server);
        for zone in &self.zones {
            if !self.state_path(zone).exists() {
                let state =
                    ZoneState { serial: zone::next_serial(0, chrono::Utc::now().timestamp()), ..Default::default() };
                self.write_zone(zone, &state, &settings).await?;
            }
        }
        self.write_include().await?;
        log.info(format!(
            "{} lists the zones; include it from the name server's named.conf",
            self.include_path().display()
        ))
        .await;
        self.rndc(&["status"]).await?;
        self.rndc(&["reconfig"]).await?;
        log.info("the name server answers rndc and loaded the zones".into()).await;
        Ok(StepFacts { service_version: Some(version), ..Default::default() })
    }

    /// Sets the site's records to exactly its uri and aliases, pointing at its web server:
    /// records of names it no longer has go.
    pub async fn add(&self, site: &SiteContext, dns: &ServerContext, log: &impl Notes) -> Result<StepFacts, StepError> {
        let _guard = self.lock.lock().await;
        let uri = site.uri.as_str();
        let web = &site.platform.web_server;
        let names: Vec<&str> = site.dns_names().map(|n| n.as_str()).collect();
        let mut wanted: Vec<(String, String, Vec<zone::RecordData>)> = Vec::new();
        let mut resolved: Option<Vec<IpAddr>> = None;
        for name in &names {
            let zone = zone::zone_for(name, uri, &self.zones);
            let at_apex = zone == *name;
            if at_apex && web.remote_host.as_str().parse::<IpAddr>().is_err() && resolved.is_none() {
                resolved = Some(resolve(web.remote_host.as_str()).await?);
            }
            let data = zone::records_for(web.remote_host.as_str(), at_apex, resolved.as_deref().unwrap_or_default());
            wanted.push((zone, (*name).to_owned(), data));
        }
        let settings = self.settings(dns);
        let mut touched = BTreeSet::new();
        // Names the site no longer has: their records go first.
        for (zone, mut state) in self.zones_with_site(uri).await? {
            let before = state.records.len();
            state.records.retain(|name, r| r.site != uri || names.contains(&name.as_str()));
            if state.records.len() != before {
                self.save_or_drop(&zone, state, &settings, log).await?;
                touched.insert(zone);
            }
        }
        for (zone, name, data) in wanted {
            let mut state = self.read_state(&zone).await?.unwrap_or_default();
            let record = Record { site: uri.to_owned(), data };
            let line = record.data.iter().map(|d| d.render().replace('\t', " ")).collect::<Vec<_>>().join(", ");
            if state.records.get(&name) != Some(&record) || !self.zone_path(&zone).exists() {
                state.records.insert(name.clone(), record);
                self.save_or_drop(&zone, state, &settings, log).await?;
            }
            log.info(format!("{name} in zone {zone}: {line}")).await;
            touched.insert(zone);
        }
        self.load(&touched).await?;
        log.info(format!("the name server of `@{}` answers for {}", dns.name, names.join(", "))).await;
        Ok(StepFacts::default())
    }

    /// Removes every record of the site, and a zone of its own with its last record.
    pub async fn remove(
        &self,
        site: &SiteContext,
        dns: &ServerContext,
        log: &impl Notes,
    ) -> Result<StepFacts, StepError> {
        let _guard = self.lock.lock().await;
        let uri = site.uri.as_str();
        let settings = self.settings(dns);
        let mut touched = BTreeSet::new();
        for (zone, mut state) in self.zones_with_site(uri).await? {
            let removed: Vec<String> =
                state.records.iter().filter(|(_, r)| r.site == uri).map(|(n, _)| n.clone()).collect();
            state.records.retain(|_, r| r.site != uri);
            self.save_or_drop(&zone, state, &settings, log).await?;
            log.info(format!("removed {} from zone {zone}", removed.join(", "))).await;
            touched.insert(zone);
        }
        if touched.is_empty() {
            log.info(format!("the name server of `@{}` holds no records of {uri}", dns.name)).await;
        }
        // Also when nothing was left: a step done before a crash may not have been loaded.
        self.load(&touched).await?;
        Ok(StepFacts::default())
    }

    /// Writes the zone with a new serial, or removes it when it is a site's own zone that
    /// has no records left.
    async fn save_or_drop(
        &self,
        zone: &str,
        mut state: ZoneState,
        settings: &ZoneSettings,
        log: &impl Notes,
    ) -> Result<(), StepError> {
        if state.records.is_empty() && !self.zones.iter().any(|z| z == zone) {
            remove_if_present(&self.state_path(zone)).await?;
            remove_if_present(&self.zone_path(zone)).await?;
            log.info(format!("zone {zone} had no records left and was removed")).await;
            return Ok(());
        }
        state.serial = zone::next_serial(state.serial, chrono::Utc::now().timestamp());
        self.write_zone(zone, &state, settings).await
    }

    /// The zone file first (checked before it replaces the old one), then the records it
    /// was written from: a step that stops between the two is done again the same way.
    async fn write_zone(&self, zone: &str, state: &ZoneState, settings: &ZoneSettings) -> Result<(), StepError> {
        tokio::fs::create_dir_all(self.records_dir()).await.map_err(|e| io_error(&self.records_dir(), e))?;
        let path = self.zone_path(zone);
        let temp = self.dir.join(format!(".{}.new", zone::zone_file_name(zone)));
        write(&temp, zone::render(zone, state, settings).as_bytes()).await?;
        let checked =
            run("named-checkzone", ["-q".as_ref(), "-i".as_ref(), "local".as_ref(), zone.as_ref(), temp.as_os_str()])
                .await;
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(StepError::permanent(format!("the zone file of {zone} does not check: {}", e.reason)));
        }
        tokio::fs::rename(&temp, &path).await.map_err(|e| io_error(&path, e))?;
        let json = serde_json::to_vec_pretty(state).expect("zone state serializes");
        let state_path = self.state_path(zone);
        let temp = self.records_dir().join(format!(".{zone}.json.new"));
        write(&temp, &json).await?;
        tokio::fs::rename(&temp, &state_path).await.map_err(|e| io_error(&state_path, e))
    }

    fn include_path(&self) -> PathBuf {
        self.dir.join(INCLUDE_FILE)
    }

    /// The include, listing every zone that has a file; checked before it replaces the old.
    async fn write_include(&self) -> Result<(), StepError> {
        let zones = self.stored_zones().await?;
        let dir = self.dir.to_str().expect("checked at start-up");
        let temp = self.dir.join(format!(".{INCLUDE_FILE}.new"));
        write(&temp, zone::render_include(dir, &zones).as_bytes()).await?;
        if let Err(e) = run("named-checkconf", [temp.as_os_str()]).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(StepError::permanent(format!("the zone list does not check: {}", e.reason)));
        }
        let path = self.include_path();
        tokio::fs::rename(&temp, &path).await.map_err(|e| io_error(&path, e))
    }

    /// Rewrites the include and has the name server load new zones (`reconfig`) and the
    /// changed ones (`reload <zone>`): only what changed is read again.
    async fn load(&self, touched: &BTreeSet<String>) -> Result<(), StepError> {
        self.write_include().await?;
        self.rndc(&["reconfig"]).await?;
        for zone in touched {
            if self.zone_path(zone).exists() {
                self.rndc(&["reload", zone]).await?;
            }
        }
        Ok(())
    }

    async fn rndc(&self, args: &[&str]) -> Result<CommandOutput, StepError> {
        let mut argv: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(config) = &self.rndc_config {
            argv.extend(["-c".as_ref(), config.as_os_str()]);
        }
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        run(&self.rndc, argv).await.map_err(|e| {
            StepError::permanent(format!(
                "the name server did not take `rndc {}`: {}; is named running with a controls key rndc has (AEGIR_RNDC_CONFIG)?",
                args.join(" "),
                e.reason
            ))
        })
    }

    async fn read_state(&self, zone: &str) -> Result<Option<ZoneState>, StepError> {
        let path = self.state_path(zone);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StepError::permanent(format!("{} is not a record list the dns-worker wrote: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Every zone the worker keeps, by name.
    async fn stored_zones(&self) -> Result<Vec<String>, StepError> {
        let dir = self.records_dir();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut zones = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&dir, e))? {
            let name = entry.file_name();
            let Some(zone) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            if !zone.starts_with('.') && aegir_contract::SiteUri::parse(zone).is_ok() {
                zones.push(zone.to_owned());
            }
        }
        zones.sort();
        Ok(zones)
    }

    /// The zones holding a record of the site.
    async fn zones_with_site(&self, uri: &str) -> Result<Vec<(String, ZoneState)>, StepError> {
        let mut found = Vec::new();
        for zone in self.stored_zones().await? {
            if let Some(state) = self.read_state(&zone).await?
                && state.records.values().any(|r| r.site == uri)
            {
                found.push((zone, state));
            }
        }
        Ok(found)
    }
}

async fn resolve(host: &str) -> Result<Vec<IpAddr>, StepError> {
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| StepError::transient(format!("cannot resolve the web server's remote_host {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    if addresses.is_empty() {
        return Err(StepError::permanent(format!("the web server's remote_host {host} has no address")));
    }
    Ok(addresses)
}

async fn run<I, S>(program: &str, args: I) -> Result<CommandOutput, StepError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = command::run(program, args, TIMEOUT).await.map_err(|e| StepError::permanent(e.to_string()))?;
    if !out.success {
        return Err(StepError::permanent(format!("`{program}` failed: {}", out.text())));
    }
    Ok(out)
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), StepError> {
    tokio::fs::write(path, bytes).await.map_err(|e| io_error(path, e))
}

async fn remove_if_present(path: &Path) -> Result<(), StepError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StepError {
    StepError::permanent(format!(
        "cannot write {}: {e}; check the dns-worker's directory (AEGIR_DNS_DIR)",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    //! With the real `named-checkzone` and `named-checkconf` (Debian's bind9-utils) and
    //! `true` standing in for rndc.

    use super::*;
    use serde_json::json;

    struct Lines(std::sync::Mutex<Vec<String>>);

    impl Notes for Lines {
        async fn info(&self, message: String) {
            self.0.lock().unwrap().push(message);
        }
    }

    fn lines() -> Lines {
        Lines(std::sync::Mutex::new(Vec::new()))
    }

    /// A fresh directory of the test's own.
    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aegir-dns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn bind(dir: &Path, zones: &[&str]) -> Bind {
        Bind::new(BindArgs {
            dns_dir: dir.to_path_buf(),
            dns_zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            dns_nameserver: None,
            dns_ttl: 300,
            rndc: "true".into(),
            rndc_config: None,
        })
        .unwrap()
    }

    fn ns() -> ServerContext {
        serde_json::from_value(
            json!({"name": "server_ns1", "remote_host": "ns1.example.net", "dns": {"service_type": "bind"}}),
        )
        .unwrap()
    }

    fn site(uri: &str, aliases: &[&str], remote_host: &str) -> SiteContext {
        serde_json::from_value(json!({
            "uri": uri,
            "aliases": aliases,
            "platform": {
                "name": "platform_app",
                "root": "/var/aegir/platforms/app",
                "web_server": {"name": "server_web1", "remote_host": remote_host, "http": {"service_type": "nginx", "port": 80}},
            },
            "platform_type": "php",
            "db_server": {"name": "server_web1", "remote_host": remote_host},
            "database": {"name": "app_abc", "user": "app_abc", "password": "pw"},
            "language": "en",
            "title": "App",
            "admin_email": "admin@example.com",
            "dns_server": ns(),
        }))
        .unwrap()
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap_or_default()
    }

    #[tokio::test]
    async fn records_go_in_their_zones_follow_the_aliases_and_leave_with_the_site() {
        let dir = dir("records");
        let bind = bind(&dir, &["example.com"]);
        let log = lines();
        bind.verify(&ns(), &log).await.unwrap();
        assert!(read(&dir, "db.example.com").contains("@\tIN\tNS\tns1.example.net."), "verify writes the zone");

        let a = site("www.example.com", &["shop.example.com", "customer.net"], "192.0.2.7");
        bind.add(&a, &ns(), &log).await.unwrap();
        let zone = read(&dir, "db.example.com");
        assert!(zone.contains("www.example.com.\tIN\tA\t192.0.2.7\t; www.example.com\n"), "{zone}");
        assert!(zone.contains("shop.example.com.\tIN\tA\t192.0.2.7"), "{zone}");
        assert!(read(&dir, "db.customer.net").contains("customer.net.\tIN\tA\t192.0.2.7"));
        let include = read(&dir, INCLUDE_FILE);
        assert!(include.contains("zone \"customer.net\"") && include.contains("zone \"example.com\""), "{include}");

        // Again: the same records, no error.
        bind.add(&a, &ns(), &log).await.unwrap();
        assert_eq!(read(&dir, "db.example.com"), zone);

        // An alias dropped: its record goes, and the customer's zone with its last one.
        let fewer = site("www.example.com", &["shop.example.com"], "192.0.2.7");
        bind.add(&fewer, &ns(), &log).await.unwrap();
        assert!(!dir.join("db.customer.net").exists());
        assert!(!read(&dir, INCLUDE_FILE).contains("customer.net"));
        let serial = |text: &str| text.split("( ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_owned();
        assert!(serial(&read(&dir, "db.example.com")).parse::<u32>().unwrap() >= serial(&zone).parse::<u32>().unwrap());

        // Another site's records stay when this one goes.
        let b = site("blog.example.com", &[], "192.0.2.8");
        bind.add(&b, &ns(), &log).await.unwrap();
        bind.remove(&fewer, &ns(), &log).await.unwrap();
        let zone = read(&dir, "db.example.com");
        assert!(!zone.contains("www.example.com.") && !zone.contains("shop.example.com."), "{zone}");
        assert!(zone.contains("blog.example.com.\tIN\tA\t192.0.2.8"), "{zone}");
        bind.remove(&fewer, &ns(), &log).await.unwrap();
        assert!(read(&dir, INCLUDE_FILE).contains("zone \"example.com\""), "the configured zone stays");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_web_server_named_by_host_gets_a_cname_and_its_addresses_at_a_zone_apex() {
        let dir = dir("cname");
        let bind = bind(&dir, &[]);
        let log = lines();
        let a = site("customer.org", &["www.customer.org"], "localhost");
        bind.add(&a, &ns(), &log).await.unwrap();
        let zone = read(&dir, "db.customer.org");
        assert!(zone.contains("customer.org.\tIN\tA\t127.0.0.1"), "{zone}");
        assert!(zone.contains("www.customer.org.\tIN\tCNAME\tlocalhost."), "{zone}");
        bind.remove(&a, &ns(), &log).await.unwrap();
        assert!(!dir.join("db.customer.org").exists());
        assert_eq!(read(&dir, INCLUDE_FILE).lines().filter(|l| l.starts_with("zone")).count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
