//! A whole Aegir system for one test: the five services and the CLI as real processes,
//! against the machine's real RabbitMQ (a fresh vhost per test), PostgreSQL (a fresh
//! database per test), MariaDB and an nginx instance of the test's own.
//!
//! Each test gets its own server name (`server_t<random>`), so its work queues are its
//! own too, and tests run side by side. Dropping the [`System`] stops everything and
//! removes what it created; when the test failed, the services' logs are printed.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};

pub mod hosts;

pub mod fpm;

pub mod browser;

pub const SERVICES: [&str; 5] = ["task-api", "scheduler", "http-worker", "db-worker", "backup-worker"];

/// How long a test waits for something that should happen in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn amqp_base() -> String {
    std::env::var("AEGIR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn postgres_admin_url() -> String {
    std::env::var("AEGIR_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The MariaDB admin account `@server_master`-like servers use, as `mysql://USER:PASS@HOST:PORT`.
pub fn mariadb_url() -> String {
    std::env::var("AEGIR_TEST_MARIADB_URL").unwrap_or_else(|_| "mysql://root:@127.0.0.1:3306".into())
}

/// The directory the workspace's binaries were built into.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // Tests run as target/<profile>/deps/<test>-<hash>; binaries such as the
    // benchmark as target/<profile>/<name>.
    let mut dir = exe.parent().expect("executable directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().expect("target profile directory");
    }
    let path = dir.join(name);
    assert!(path.is_file(), "{} is not built; run `cargo build --workspace --bins` first", path.display());
    path
}

pub fn random_suffix() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase()
}

/// A port for a service of the test to listen on. Taken below the kernel's ephemeral
/// range (32768 and up), so no outgoing connection of a parallel test can grab it before
/// the service binds it, and never handed out twice in one test binary.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list");
    loop {
        let port = rand::rng().random_range(20_000..32_000);
        let free = !given.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok();
        if free {
            given.push(port);
            return port;
        }
    }
}

fn base_url_with_vhost(vhost: &str) -> String {
    let base = amqp_base();
    let root = base.rsplit_once('/').map_or(base.as_str(), |(root, _)| root);
    format!("{root}/{vhost}")
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Settings a test may change before the system starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment for one service, e.g. a step delay for the http-worker.
    pub env: HashMap<&'static str, Vec<(String, String)>>,
    /// The services reach RabbitMQ and PostgreSQL over TLS (the test itself does not).
    pub tls: Option<Tls>,
}

/// Where the services find TLS: RabbitMQ's amqps:// port and the CA that signed its
/// certificate, and the root PostgreSQL's certificate chains to.
#[derive(Debug, Clone)]
pub struct Tls {
    pub amqps_port: u16,
    pub amqp_ca: PathBuf,
    pub postgres_root: PathBuf,
}

impl Options {
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn env(mut self, service: &'static str, key: &str, value: &str) -> Self {
        self.env.entry(service).or_default().push((key.into(), value.into()));
        self
    }
}

pub struct System {
    pub server: String,
    /// The port this test's sites are served on (the server's `http_port`).
    pub http_port: u16,
    pub vhost: String,
    pub amqp_url: String,
    pub database: String,
    pub database_url: String,
    pub api: String,
    pub dir: tempfile::TempDir,
    /// The deployment's master signing key (task-api and the scheduler hold it; each
    /// worker gets its server's key derived from it).
    pub master_key: aegir_amqp::signing::MasterKey,
    pub pg: PgPool,
    /// Sends the admin token with every request.
    pub http: reqwest::Client,
    /// The API token of user `admin`, which task-api wrote at its first start.
    pub admin_token: String,
    health: HashMap<&'static str, u16>,
    options: Options,
    children: HashMap<&'static str, Child>,
    nginx_conf: PathBuf,
}

impl System {
    pub async fn start() -> System {
        Self::start_with(Options::default()).await
    }

    /// Creates the vhost, database and directories, starts nginx and every service, and
    /// waits until the API and the workers answer.
    pub async fn start_with(options: Options) -> System {
        let suffix = random_suffix();
        let server = format!("server_t{suffix}");
        let vhost = format!("aegir_e2e_{suffix}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let amqp_url = base_url_with_vhost(&vhost);

        let database = format!("aegir_e2e_{suffix}");
        let admin = PgPool::connect(&postgres_admin_url()).await.expect("PostgreSQL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\""))).execute(&admin).await.unwrap();
        admin.close().await;
        let database_url = {
            let base = postgres_admin_url();
            let root = base.rsplit_once('/').map_or(base.as_str(), |(root, _)| root).to_owned();
            format!("{root}/{database}")
        };

        let dir = tempfile::Builder::new().prefix("aegir-e2e-").tempdir().expect("temp dir");
        for sub in ["config/vhost.d", "platforms", "nginx/tmp", "logs", "backups"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // Platforms are read by the web server's user, as in production.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

        let nginx_conf = write_nginx_conf(dir.path());
        let status = std::process::Command::new("nginx").arg("-c").arg(&nginx_conf).status().expect("nginx runs");
        assert!(status.success(), "nginx did not start with {}", nginx_conf.display());

        let api_port = free_port();
        let mut health = HashMap::from([("task-api", api_port)]);
        for worker in ["http-worker", "db-worker", "backup-worker"] {
            health.insert(worker, free_port());
        }
        let mut system = System {
            server,
            http_port: free_port(),
            vhost,
            amqp_url,
            database,
            pg: PgPool::connect_lazy(&database_url).unwrap(),
            database_url,
            api: format!("http://127.0.0.1:{api_port}"),
            dir,
            master_key: aegir_amqp::signing::MasterKey::new(
                aegir_amqp::signing::SigningKey::from_bytes(rand::random()),
            ),
            http: reqwest::Client::new(),
            admin_token: String::new(),
            health,
            options,
            children: HashMap::new(),
            nginx_conf,
        };
        for service in SERVICES {
            system.spawn(service);
        }
        for service in SERVICES {
            system.wait_healthy(service).await;
        }
        let token = std::fs::read_to_string(system.dir.path().join("admin.token")).expect("task-api wrote admin.token");
        system.admin_token = token.trim().to_owned();
        system.http = client_with_token(&system.admin_token);
        system
    }

    pub fn platforms_dir(&self) -> PathBuf {
        self.dir.path().join("platforms")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The backup store of db-worker and backup-worker: a directory (`file://` store).
    pub fn backup_store_dir(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{service}.log"))
    }

    /// The service's environment: the same settings deploy/quickstart.sh gives it.
    fn env_of(&self, service: &'static str) -> Vec<(String, String)> {
        let (amqp_url, database_url) = match &self.options.tls {
            None => (self.amqp_url.clone(), self.database_url.clone()),
            Some(tls) => (
                format!("amqps://guest:guest@127.0.0.1:{}/{}", tls.amqps_port, self.vhost),
                format!(
                    "{}?sslmode=verify-ca&sslrootcert={}",
                    self.database_url.replace("localhost", "127.0.0.1"),
                    tls.postgres_root.display()
                ),
            ),
        };
        let mut env = vec![("AEGIR_AMQP_URL".to_owned(), amqp_url), ("RUST_LOG".into(), "info".into())];
        if let Some(tls) = &self.options.tls {
            env.push(("SSL_CERT_FILE".into(), tls.amqp_ca.display().to_string()));
        }
        let platforms = self.platforms_dir().display().to_string();
        match service {
            "task-api" => {
                env.push(("AEGIR_SIGNING_KEY".into(), self.master_key.to_hex()));
                env.push(("AEGIR_DATABASE_URL".into(), database_url.clone()));
                env.push(("AEGIR_API_LISTEN".into(), format!("127.0.0.1:{}", self.health["task-api"])));
                env.push(("AEGIR_PLATFORM_ROOTS".into(), platforms));
                let token_file = self.dir.path().join("admin.token").display().to_string();
                env.push(("AEGIR_BOOTSTRAP_ADMIN_TOKEN_FILE".into(), token_file));
                // Scheduled tasks would mix with the ones each test asks for; a test of
                // the cron queue sets its own interval.
                env.push(("AEGIR_CRON_INTERVAL_SECS".into(), "0".into()));
                env.push(("AEGIR_STATS_INTERVAL_SECS".into(), "0".into()));
                env.push(("AEGIR_BACKUP_INTERVAL_SECS".into(), "0".into()));
                env.push(("AEGIR_CERT_INTERVAL_SECS".into(), "0".into()));
                env.push(("AEGIR_BACKUP_KEEP_DAILY".into(), "0".into()));
                env.push(("AEGIR_BACKUP_KEEP_WEEKLY".into(), "0".into()));
            }
            "scheduler" => {
                env.push(("AEGIR_SIGNING_KEY".into(), self.master_key.to_hex()));
                env.push(("AEGIR_DATABASE_URL".into(), database_url.clone()));
                env.push(("AEGIR_RETRY_DELAY_MS".into(), "200".into()));
            }
            worker => {
                env.push(("AEGIR_SERVER".into(), self.server.clone()));
                let server = aegir_contract::ServerName::parse(&self.server).expect("a valid server name");
                env.push(("AEGIR_WORKER_KEY".into(), self.master_key.server(&server).to_hex()));
                env.push(("AEGIR_HEALTH_LISTEN".into(), format!("127.0.0.1:{}", self.health[worker])));
                if matches!(worker, "db-worker" | "backup-worker") {
                    let store = format!("file://{}", self.backup_store_dir().display());
                    env.push(("AEGIR_BACKUP_STORE".into(), store));
                }
                if worker == "backup-worker" {
                    env.push(("AEGIR_PLATFORM_ROOTS".into(), platforms.clone()));
                }
                if worker == "http-worker" {
                    // A test that runs no php-fpm masters of its own passes every site to
                    // the machine's php-fpm, rather than writing pools into its config.
                    let own_php = self.options.env.get(service).is_some_and(|env| {
                        env.iter().any(|(k, _)| k == "AEGIR_PHP_FPM_SOCKET" || k == "AEGIR_PHP_FPM_POOL_DIR")
                    });
                    if !own_php && let Some(socket) = machine_fpm_socket() {
                        env.push(("AEGIR_PHP_FPM_SOCKET".into(), socket.display().to_string()));
                    }
                    env.push(("AEGIR_HTTP_CONFIG_DIR".into(), self.config_dir().display().to_string()));
                    env.push(("AEGIR_NGINX_CONF".into(), self.nginx_conf.display().to_string()));
                    env.push(("AEGIR_PLATFORM_ROOTS".into(), platforms));
                }
            }
        }
        env.extend(self.options.env.get(service).cloned().unwrap_or_default());
        env
    }

    /// Starts a service (again), appending to its log.
    pub fn spawn(&mut self, service: &'static str) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(service)).unwrap();
        let child = Command::new(bin(service))
            .envs(self.env_of(service))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {service}: {e}"));
        self.children.insert(service, child);
    }

    /// Starts a service with changed settings (replacing any earlier extra settings).
    pub fn respawn_with(&mut self, service: &'static str, env: &[(&str, &str)]) {
        self.options.env.insert(service, env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        self.spawn(service);
    }

    /// `kill -9` a service and reap it.
    pub async fn kill9(&mut self, service: &'static str) {
        let mut child = self.children.remove(service).unwrap_or_else(|| panic!("{service} is not running"));
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    pub async fn wait_healthy(&self, service: &'static str) {
        let Some(port) = self.health.get(service) else { return };
        let url = format!("http://127.0.0.1:{port}/healthz");
        let healthy = wait_for(PATIENCE, || async {
            matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        assert!(healthy, "{service} did not become healthy at {url}; its log:\n{}", self.log_tail(service));
    }

    /// The last lines of a service's log, without backtrace frames (so the error above
    /// a backtrace stays in view).
    pub fn log_tail(&self, service: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
        let frame = |l: &&str| {
            let t = l.trim_start();
            t.starts_with("at ") || t.split_once(':').is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        };
        let lines: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs the `aegir` CLI against this system's API, as the admin.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_token(&self.admin_token, args).await
    }

    /// Runs the `aegir` CLI against this system's API with `token`. A run that outlasts
    /// the longest task (one following a task that never ends) fails the test rather
    /// than holding it forever.
    pub async fn cli_with_token(&self, token: &str, args: &[&str]) -> CliOutput {
        let run = Command::new(bin("aegir"))
            .args(args)
            .env("AEGIR_API", &self.api)
            .env("AEGIR_TOKEN", token)
            .env_remove("AEGIR_TOKEN_FILE")
            .env_remove("AEGIR_MASTER_DB")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(INSTALL_PATIENCE * 2, run)
            .await
            .unwrap_or_else(|_| panic!("aegir {args:?} did not end within {} s", (INSTALL_PATIENCE * 2).as_secs()))
            .expect("aegir runs");
        CliOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Saves this test's server with nginx and MariaDB through the CLI.
    pub async fn save_server(&self, master_db: &str) {
        let out = self
            .cli(&[
                "save",
                &format!("@{}", self.server),
                "--context_type=server",
                "--remote_host=localhost",
                "--http_service_type=nginx",
                &format!("--http_port={}", self.http_port),
                "--db_service_type=mariadb",
                &format!("--master_db={master_db}"),
            ])
            .await;
        assert_eq!(out.code, Some(0), "aegir save failed: {out}");
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.api)).send().await.expect("API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST` to the API: status and JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.api)).json(&body).send().await.expect("API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_task(&self, context: &str, task: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/tasks", self.api))
            .json(&json!({ "context": context, "task": task }))
            .send()
            .await
            .expect("API reachable");
        assert_eq!(response.status().as_u16(), 202, "task not accepted");
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().expect("task id").to_owned()
    }

    /// Waits until the task is finished and returns its view.
    pub async fn wait_task(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, view) = self.get(&format!("/api/v1/tasks/{id}")).await;
            if matches!(view["status"].as_str(), Some("success" | "failed" | "cancelled")) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} did not finish; last view {view}\nscheduler:\n{}",
                self.log_tail("scheduler")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The task's log as stored by task-api: `(level, source, message)` in order.
    pub async fn task_log(&self, id: &str) -> Vec<(String, String, String)> {
        let (status, body) = self.get(&format!("/api/v1/tasks/{id}/log")).await;
        assert_eq!(status, 200, "log of {id}: {body}");
        body["items"]
            .as_array()
            .expect("log items")
            .iter()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (s("level"), s("source"), s("message"))
            })
            .collect()
    }

    /// Saves `@platform_{name}`: an empty directory on this system's server.
    pub async fn save_empty_platform(&self, name: &str) {
        let root = self.platforms_dir().join(name);
        std::fs::create_dir_all(&root).unwrap();
        let root = format!("--root={}", root.display());
        let web = format!("--web_server=@{}", self.server);
        self.cli_ok(&["save", &format!("@platform_{name}"), "--context_type=platform", &root, &web]).await;
    }

    /// Takes the one message waiting in `queue` off it (as its sender signed it) and
    /// returns its body.
    pub async fn take_message(&self, queue: &str) -> Vec<u8> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let waiting = wait_for(PATIENCE, || async { self.queue_depth(queue).await == 1 }).await;
        assert!(waiting, "no message waits in {queue}");
        let channel = self.channel().await;
        let message = channel.basic_get(queue.into(), BasicGetOptions::default()).await.unwrap().expect("a message");
        message.delivery.ack(BasicAckOptions::default()).await.unwrap();
        message.delivery.data.clone()
    }

    /// A channel on this system's vhost, for tests that talk to RabbitMQ directly.
    pub async fn channel(&self) -> lapin::Channel {
        let conn = lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default()).await.unwrap();
        conn.create_channel().await.unwrap()
    }

    /// Messages waiting in a queue (passive declare).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let channel = self.channel().await;
        let q = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"));
        q.message_count()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in SERVICES {
                eprintln!("----- {service} log (last lines) -----\n{}", self.log_tail(service));
            }
        }
        for child in self.children.values_mut() {
            let _ = child.start_kill();
        }
        let _ = std::process::Command::new("nginx").arg("-c").arg(&self.nginx_conf).args(["-s", "quit"]).status();
        let _ = std::process::Command::new("rabbitmqctl").args(["delete_vhost", &self.vhost]).output();
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", &postgres_admin_url(), "-c"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database))
            .output();
    }
}

fn write_nginx_conf(dir: &Path) -> PathBuf {
    let d = dir.display();
    // The base config the http-worker writes must exist before nginx first reads it.
    std::fs::write(dir.join("config/nginx.conf"), "").unwrap();
    let conf = format!(
        "pid {d}/nginx/nginx.pid;\n\
         error_log {d}/nginx/error.log notice;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/nginx/tmp/body;\n\
           proxy_temp_path {d}/nginx/tmp/proxy;\n\
           fastcgi_temp_path {d}/nginx/tmp/fastcgi;\n\
           uwsgi_temp_path {d}/nginx/tmp/uwsgi;\n\
           scgi_temp_path {d}/nginx/tmp/scgi;\n\
           include {d}/config/nginx.conf;\n\
         }}\n"
    );
    let path = dir.join("nginx/nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
/// The number a service's log line gives `field` (` field=N`); 0 when it gives none.
pub fn log_field(line: &str, field: &str) -> u64 {
    let Some((_, rest)) = line.split_once(&format!(" {field}=")) else { return 0 };
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `mysql://USER:PASS@HOST:PORT` with the password replaced.
pub fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("mysql:// url");
    let (creds, host) = rest.rsplit_once('@').expect("user@host");
    let user = creds.split(':').next().unwrap_or("root");
    format!("{scheme}://{user}:{password}@{host}")
}

/// Writes files under `root` (creating directories), for platform fixtures.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, body) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// Copies the tree at `src` into `dst` as real files: symlinks are followed (Debian
/// links parts of its PHP applications to /etc and /var/lib), dangling ones skipped,
/// and top-level entries named in `skip` left out.
pub fn copy_tree_resolving(src: &Path, dst: &Path, skip: &[&str]) {
    std::fs::create_dir_all(dst).unwrap();
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf(), 0usize)];
    while let Some((from, to, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if depth == 0 && skip.iter().any(|s| name == *s) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
            let target = to.join(&name);
            if meta.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                stack.push((entry.path(), target, depth + 1));
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}

/// An apache of the test's own: its own config file, pid file and logs under `dir`,
/// including the http-worker's base config (`<config_dir>/apache.conf`), which holds
/// the `Listen` for `port` (and for https) once a server verify has written it. It loads
/// mod_ssl as Debian's apache2 does after `a2enmod ssl`, so sites with ssl answer over https.
/// Stopped when dropped.
pub struct Apache {
    pub conf: PathBuf,
    pub port: u16,
}

impl Apache {
    pub fn start(dir: &Path, config_dir: &Path, port: u16) -> Apache {
        let run = dir.join("apache");
        std::fs::create_dir_all(&run).unwrap();
        let base = config_dir.join("apache.conf");
        if !base.exists() {
            // Apache will not start without a port; server verify writes the same line.
            std::fs::write(&base, format!("Listen {port}\n")).unwrap();
        }
        let modules = [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("dir_module", "mod_dir.so"),
            ("mime_module", "mod_mime.so"),
            ("env_module", "mod_env.so"),
            ("alias_module", "mod_alias.so"),
            ("rewrite_module", "mod_rewrite.so"),
            ("proxy_module", "mod_proxy.so"),
            ("proxy_fcgi_module", "mod_proxy_fcgi.so"),
            // What `a2enmod ssl` enables on Debian: mod_ssl and the modules it depends on.
            ("setenvif_module", "mod_setenvif.so"),
            ("socache_shmcb_module", "mod_socache_shmcb.so"),
            ("ssl_module", "mod_ssl.so"),
        ];
        let mut conf = format!(
            "ServerName localhost\n\
             PidFile {r}/httpd.pid\n\
             DefaultRuntimeDir {r}\n\
             Mutex file:{r} default\n\
             ErrorLog {r}/error.log\n\
             LogLevel warn\n\
             User www-data\n\
             Group www-data\n",
            r = run.display()
        );
        for (name, file) in modules {
            conf.push_str(&format!("LoadModule {name} /usr/lib/apache2/modules/{file}\n"));
        }
        // Debian's mods-available/ssl.conf, with the session cache in this apache's own directory.
        conf.push_str(&format!(
            "SSLRandomSeed startup builtin\n\
             SSLRandomSeed connect builtin\n\
             SSLSessionCache shmcb:{r}/ssl_scache(512000)\n\
             SSLSessionCacheTimeout 300\n\
             SSLCipherSuite HIGH:!aNULL\n\
             SSLProtocol all -SSLv3\n\
             SSLSessionTickets off\n",
            r = run.display()
        ));
        conf.push_str(&format!(
            "TypesConfig /etc/mime.types\n\
             <Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n\
             IncludeOptional {}\n",
            base.display()
        ));
        let path = run.join("httpd.conf");
        std::fs::write(&path, conf).unwrap();
        let out = std::process::Command::new("apache2").arg("-f").arg(&path).args(["-k", "start"]).output().unwrap();
        assert!(out.status.success(), "apache did not start: {}", String::from_utf8_lossy(&out.stderr));
        Apache { conf: path, port }
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = std::process::Command::new("apache2").arg("-f").arg(&self.conf).args(["-k", "stop"]).output();
    }
}

impl System {
    /// Sends one step straight to its worker's queue, as the scheduler would, and waits
    /// for its result on the events exchange.
    pub async fn run_step(&self, action: aegir_contract::StepAction) -> aegir_contract::StepResult {
        self.run_step_logged(action, PATIENCE).await.0
    }

    /// Like [`System::run_step`], also returning the log lines the step wrote.
    pub async fn run_step_logged(
        &self,
        action: aegir_contract::StepAction,
        patience: Duration,
    ) -> (aegir_contract::StepResult, Vec<aegir_contract::LogLine>) {
        let service = worker_of(&action);
        let pending = self.publish_step(action).await;
        tokio::time::timeout(patience, pending.wait())
            .await
            .unwrap_or_else(|_| panic!("no step result within {patience:?}; {service}:\n{}", self.log_tail(service)))
    }

    /// Sends one step straight to its worker's queue and returns without waiting for
    /// its result, so a test can act (kill the worker) while the step runs.
    pub async fn publish_step(&self, action: aegir_contract::StepAction) -> PendingStep {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        let channel = self.channel().await;
        let queue = channel
            .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, Default::default())
            .await
            .unwrap();
        for key in ["step.result.#", "task.log"] {
            channel
                .queue_bind(
                    queue.name().clone(),
                    "aegir.events".into(),
                    key.into(),
                    QueueBindOptions::default(),
                    Default::default(),
                )
                .await
                .unwrap();
        }
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                Default::default(),
            )
            .await
            .unwrap();
        let task_id = uuid::Uuid::now_v7();
        let step = aegir_contract::StepDispatched {
            task_id,
            step: 0,
            attempt: 0,
            route: action.route(),
            lane: Default::default(),
            action,
            dispatched_at: chrono::Utc::now(),
        };
        let signer = aegir_amqp::signing::Signer::Control(self.master_key.clone());
        let broker = aegir_amqp::Broker::signed(self.amqp_url.clone(), "e2e test", signer);
        broker.publish(&step).await.unwrap();
        PendingStep { task_id, consumer, _channel: channel }
    }
}

/// The service whose queue a step goes to, for its log.
fn worker_of(action: &aegir_contract::StepAction) -> &'static str {
    match action.route().service {
        aegir_contract::ServiceKind::Db => "db-worker",
        aegir_contract::ServiceKind::Backup => "backup-worker",
        aegir_contract::ServiceKind::Http => "http-worker",
        aegir_contract::ServiceKind::Dns => "dns-worker",
    }
}

/// A step sent to its worker; its result and log lines come on the events exchange.
pub struct PendingStep {
    pub task_id: uuid::Uuid,
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
}

impl PendingStep {
    /// The step's result and the log lines it wrote until then.
    pub async fn wait(mut self) -> (aegir_contract::StepResult, Vec<aegir_contract::LogLine>) {
        use aegir_contract::Message as _;
        use futures_util::StreamExt;
        let mut lines = Vec::new();
        while let Some(delivery) = self.consumer.next().await {
            let delivery = delivery.unwrap();
            if delivery.routing_key.as_str() == "task.log" {
                let log = aegir_contract::TaskLog::decode(&delivery.data).unwrap();
                if log.task_id == self.task_id {
                    lines.extend(log.lines);
                }
                continue;
            }
            let result = aegir_contract::StepResult::decode(&delivery.data).unwrap();
            if result.task_id == self.task_id {
                // The lines not sent before the step ended ride in its result.
                lines.extend(result.log.iter().cloned());
                return (result, lines);
            }
        }
        panic!("the result stream ended");
    }
}

/// The socket of the machine's own php-fpm, `/run/php/php<version>-fpm.sock`.
fn machine_fpm_socket() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/run/php")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php") && n.ends_with("-fpm.sock"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A php-fpm of the test's own, running PHP as `www-data` like the system's, with a
/// socket any user may connect to (the test's nginx workers run as `nobody`, which
/// the system pool does not let in). Stopped when dropped.
pub struct PhpFpm {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl PhpFpm {
    pub fn start() -> PhpFpm {
        let dir = tempfile::Builder::new().prefix("aegir-e2e-fpm-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let program = std::fs::read_dir("/usr/sbin")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php-fpm")))
            .expect("php-fpm is installed");
        let d = dir.path().display();
        let socket = dir.path().join("php-fpm.sock");
        let conf = format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/error.log\ndaemonize = no\n\
             [e2e]\nuser = www-data\ngroup = www-data\nlisten = {s}\nlisten.mode = 0666\n\
             pm = ondemand\npm.max_children = 4\n",
            s = socket.display()
        );
        let path = dir.path().join("php-fpm.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new(&program)
            .arg("--fpm-config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let deadline = std::time::Instant::now() + PATIENCE;
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "php-fpm did not open {}", socket.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        PhpFpm { socket, _dir: dir, child }
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SIGTERM: the master stops its pool's processes too; after a kill they would stay.
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl System {
    /// The process id of a running service, e.g. to read its memory use.
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.children.get(service).and_then(Child::id)
    }

    /// The main config of this system's nginx (`nginx -c`).
    pub fn nginx_conf(&self) -> &Path {
        &self.nginx_conf
    }
}

/// Creates a RabbitMQ vhost guest may use and returns its `amqp://` url; for measuring
/// the bare broker apart from the system's own vhost.
pub fn add_vhost(vhost: &str) -> String {
    rabbitmqctl(&["add_vhost", vhost]);
    rabbitmqctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
    base_url_with_vhost(vhost)
}

pub fn delete_vhost(vhost: &str) {
    let _ = std::process::Command::new("rabbitmqctl").args(["delete_vhost", vhost]).output();
}

/// The MariaDB admin account of [`mariadb_url`] as a server's db service.
pub fn mariadb_service() -> aegir_contract::DbService {
    let url = mariadb_url();
    let rest = url.strip_prefix("mysql://").expect("AEGIR_TEST_MARIADB_URL is a mysql:// URL");
    let (creds, hostport) = rest.rsplit_once('@').expect("mysql://USER:PASSWORD@HOST:PORT");
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    aegir_contract::DbService {
        service_type: aegir_contract::DbServiceType::Mariadb,
        host: aegir_contract::HostName::parse(host).unwrap(),
        port: port.parse().unwrap(),
        admin_user: user.into(),
        admin_password: aegir_contract::Secret::new(password),
    }
}

/// A connection to MariaDB as its admin, for checking what the workers did.
pub async fn mariadb_admin() -> sqlx::MySqlConnection {
    use sqlx::Connection;
    let db = mariadb_service();
    let mut options =
        sqlx::mysql::MySqlConnectOptions::new().host(db.host.as_str()).port(db.port).username(&db.admin_user);
    if !db.admin_password.is_empty() {
        options = options.password(db.admin_password.expose());
    }
    sqlx::MySqlConnection::connect_with(&options).await.expect("MariaDB reachable as admin")
}

/// The whole system, with a php-fpm of the test's own serving the web server's sites.
pub async fn start_with_php(options: Options) -> (System, PhpFpm) {
    let fpm = PhpFpm::start();
    let socket = fpm.socket.display().to_string();
    let system = System::start_with(options.env("http-worker", "AEGIR_PHP_FPM_SOCKET", &socket)).await;
    (system, fpm)
}

impl System {
    /// Runs the CLI, expects it to succeed, and returns what it printed.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert_eq!(out.code, Some(0), "aegir {args:?} failed: {out}");
        out.stdout
    }

    /// Saves this system's server (nginx and MariaDB) and verifies it through the CLI.
    pub async fn server_ready(&self) {
        self.save_server(&mariadb_url()).await;
        self.cli_ok(&[&format!("@{}", self.server), "verify"]).await;
    }

    /// `@platform_<name>`: a copy of Debian's WordPress at `<platforms>/<name>`, saved on
    /// this system's server and verified through the CLI. Returns its root.
    pub async fn wordpress_platform(&self, name: &str) -> PathBuf {
        let root = self.platforms_dir().join(name);
        copy_tree_resolving(Path::new("/usr/share/wordpress"), &root, &["wp-config.php", ".htaccess"]);
        let root_arg = format!("--root={}", root.display());
        let web = format!("--web_server=@{}", self.server);
        let platform = format!("@platform_{name}");
        self.cli_ok(&["save", &platform, "--context_type=platform", &root_arg, &web]).await;
        self.cli_ok(&[&platform, "verify"]).await;
        root
    }

    /// A site saved on `@platform_<platform>` with its database on this system's server,
    /// and installed through the CLI.
    pub async fn installed_site(&self, platform: &str, uri: &str, title: &str) {
        let site = format!("@{uri}");
        let platform = format!("--platform=@platform_{platform}");
        let db = format!("--db_server=@{}", self.server);
        let title = format!("--title={title}");
        self.cli_ok(&["save", &site, "--context_type=site", &platform, &db, &title]).await;
        self.cli_ok(&[&site, "install"]).await;
    }

    /// `@platform_<name>`: a plain PHP platform, an `index.php` that names the site it
    /// answers for, saved on this system's server and verified. Returns its root.
    pub async fn php_platform(&self, name: &str) -> PathBuf {
        let root = self.platforms_dir().join(name);
        std::fs::create_dir_all(root.join("sites")).unwrap();
        std::fs::write(
            root.join("index.php"),
            "<?php\n$site = require __DIR__ . '/sites/' . $_SERVER['AEGIR_SITE_URI'] . '/settings.php';\n\
             echo 'site ', $site['uri'], \"\\n\";\n",
        )
        .unwrap();
        let root_arg = format!("--root={}", root.display());
        let web = format!("--web_server=@{}", self.server);
        let platform = format!("@platform_{name}");
        self.cli_ok(&["save", &platform, "--context_type=platform", &root_arg, &web]).await;
        self.cli_ok(&[&platform, "verify"]).await;
        let (_, view) = self.get(&format!("/api/v1/platforms/platform_{name}")).await;
        assert_eq!(view["platform_type"], "php", "detected as a plain PHP platform: {view}");
        root
    }

    /// `count` sites `<prefix><n>.example.com` of `@platform_<platform>` (rooted at
    /// `root`) straight into task-api's table, enabled and installed, each with its
    /// directory: what an install leaves, less the vhost and settings a verify writes.
    /// For fleets too big to install one by one. Returns their uris.
    pub async fn insert_enabled_sites(&self, platform: &str, root: &Path, prefix: &str, count: usize) -> Vec<String> {
        sqlx::query(
            "INSERT INTO sites (uri, platform, db_server, status, language, title, admin_email, db_name, db_user,
                                db_password, installed_at)
             SELECT $1 || g || '.example.com', $2, $3, 'enabled', 'en', 'Site ' || g,
                    'webmaster@' || $1 || g || '.example.com', $1 || g || '_db', $1 || g || '_db', md5(g::text), now()
             FROM generate_series(1, $4) AS g",
        )
        .bind(prefix)
        .bind(format!("platform_{platform}"))
        .bind(&self.server)
        .bind(count as i64)
        .execute(&self.pg)
        .await
        .expect("inserting site rows");
        sqlx::query("ANALYZE sites").execute(&self.pg).await.unwrap();
        let uris: Vec<String> = (1..=count).map(|g| format!("{prefix}{g}.example.com")).collect();
        for uri in &uris {
            std::fs::create_dir_all(root.join("sites").join(uri)).unwrap();
        }
        uris
    }

    /// The http-worker's log line of each web server config cycle so far (one config
    /// test and reload each); [`log_field`] reads their figures.
    pub fn config_cycles(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log_path("http-worker")).unwrap_or_default();
        log.lines().filter(|l| l.contains("web server config applied")).map(str::to_owned).collect()
    }

    /// nginx's error log (at notice level, so each reload leaves a line).
    pub fn nginx_error_log(&self) -> PathBuf {
        self.dir.path().join("nginx/error.log")
    }

    /// Reloads this system's nginx has done so far: its master logs `reconfiguring` for each.
    pub fn nginx_reloads(&self) -> usize {
        let log = std::fs::read_to_string(self.nginx_error_log()).unwrap_or_default();
        log.lines().filter(|l| l.ends_with(": reconfiguring")).count()
    }

    /// A platform made from a Debian package's tree (`/usr/share/<package>`), without the
    /// top-level entries in `skip` (Debian's own config dispatch).
    pub fn platform_from_package(&self, package: &str, skip: &[&str]) -> PathBuf {
        let root = self.platforms_dir().join(package);
        copy_tree_resolving(&Path::new("/usr/share").join(package), &root, skip);
        root
    }
}

/// An HTTP client sending `Authorization: Bearer <token>` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("a token is a valid header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers).build().expect("an HTTP client")
}

/// `GET http://<host>:<port><path>` answered by 127.0.0.1, as a browser would ask:
/// status, body and `Location`. Redirects are followed when `follow`. Status 0 means
/// nothing listens on the port (e.g. its last vhost is gone).
pub async fn fetch(host: &str, port: u16, path: &str, follow: bool) -> (u16, String, String) {
    let policy = if follow { reqwest::redirect::Policy::limited(5) } else { reqwest::redirect::Policy::none() };
    let client = reqwest::Client::builder()
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .redirect(policy)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    match client.get(format!("http://{host}:{port}{path}")).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let location =
                response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
            (status, response.text().await.unwrap_or_default(), location)
        }
        Err(e) if e.is_connect() => (0, String::new(), String::new()),
        Err(e) => panic!("asking {host}:{port}{path}: {e}"),
    }
}

/// Asks `/` until the page does (or does not) show `text` three times in a row — nginx
/// workers from before a reload may take a last request — and returns the last status and
/// body. Redirects are followed only while the text is expected: a removed site's host may
/// reach another site, whose redirect to its own name must not be followed.
pub async fn fetch_showing(host: &str, port: u16, text: &str, shown: bool) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut steady = 0;
    loop {
        let (status, body, _) = fetch(host, port, "/", shown).await;
        steady = if body.contains(text) == shown { steady + 1 } else { 0 };
        if steady == 3 || tokio::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Sites at step level: steps are published straight to the http-worker's work queue as
// the scheduler would send them, and the site's MariaDB database and user are made by
// the test itself, as the db-worker's `site database create` step would.

/// Installers create dozens of tables; give them time on a small machine.
pub const INSTALL_PATIENCE: Duration = Duration::from_secs(300);

/// This system's server with a web server of `kind` on `port` and the test MariaDB.
pub fn web_server(system: &System, kind: aegir_contract::HttpServiceType, port: u16) -> aegir_contract::ServerContext {
    use aegir_contract::*;
    ServerContext {
        name: ServerName::parse(&system.server).unwrap(),
        remote_host: HostName::parse("localhost").unwrap(),
        http: Some(HttpService { service_type: kind, port }),
        db: Some(mariadb_service()),
        dns: None,
    }
}

/// A site `<label>-<random>.test` (with a `www.` alias) on the platform at `root`.
pub fn new_site(
    server: &aegir_contract::ServerContext,
    root: &Path,
    kind: aegir_contract::PlatformType,
    label: &str,
) -> aegir_contract::SiteContext {
    use aegir_contract::*;
    let suffix = random_suffix();
    let uri = SiteUri::parse(&format!("{label}-{suffix}.test")).unwrap();
    let db = DbIdent::for_site(&uri, &suffix);
    SiteContext {
        aliases: vec![SiteUri::parse(&format!("www.{label}-{suffix}.test")).unwrap()],
        redirection: false,
        platform: PlatformContext {
            name: PlatformName::parse(&format!("platform_{label}")).unwrap(),
            root: AbsolutePath::parse(root.to_str().unwrap()).unwrap(),
            web_server: server.clone(),
            source: None,
        },
        platform_type: kind,
        db_server: server.clone(),
        database: SiteDatabase { name: db.clone(), user: db, password: Secret::new(format!("Pw{}", random_suffix())) },
        profile: None,
        language: LanguageCode::parse("en").unwrap(),
        title: SiteTitle::parse(&format!("Aegir {label} {suffix}")).unwrap(),
        admin_email: Email::parse("admin@example.com").unwrap(),
        client: None,
        php_version: None,
        dns_server: None,
        ssl: Default::default(),
        uri,
    }
}

/// The site's database and user, as `site database create` makes them.
pub async fn create_site_database(site: &aegir_contract::SiteContext) {
    let mut conn = mariadb_admin().await;
    let (name, user) = (site.database.name.as_str(), site.database.user.as_str());
    let password = site.database.password.expose();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS `{name}`")))
        .execute(&mut conn)
        .await
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}'"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}'")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

pub async fn drop_site_database(site: &aegir_contract::SiteContext) {
    let mut conn = mariadb_admin().await;
    let (name, user) = (site.database.name.as_str(), site.database.user.as_str());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`"))).execute(&mut conn).await.unwrap();
    for host in ["localhost", "127.0.0.1"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP USER IF EXISTS '{user}'@'{host}'")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// The facts of a step that must have succeeded.
pub fn assert_step_success(result: &aegir_contract::StepResult, what: &str) -> aegir_contract::StepFacts {
    match &result.outcome {
        aegir_contract::StepOutcome::Success { facts } => facts.clone(),
        aegir_contract::StepOutcome::Failed { reason, .. } => panic!("{what} failed: {reason}"),
    }
}

impl System {
    /// Runs a step that must succeed; its facts and log lines.
    pub async fn step_ok(
        &self,
        action: aegir_contract::StepAction,
        what: &str,
    ) -> (aegir_contract::StepFacts, Vec<aegir_contract::LogLine>) {
        let (result, lines) = self.run_step_logged(action, INSTALL_PATIENCE).await;
        (assert_step_success(&result, what), lines)
    }

    /// `<config dir>/vhost.d/<uri>.conf`
    pub fn vhost_path(&self, site: &aegir_contract::SiteContext) -> PathBuf {
        self.config_dir().join("vhost.d").join(format!("{}.conf", site.uri))
    }
}

/// A system whose http-worker passes PHP to a php-fpm of the test's own.
pub async fn start_with_fpm() -> (System, PhpFpm) {
    let fpm = PhpFpm::start();
    let socket = fpm.socket.display().to_string();
    let system = System::start_with(Options::default().env("http-worker", "AEGIR_PHP_FPM_SOCKET", &socket)).await;
    (system, fpm)
}

/// `<platform root>/sites/<uri>`
pub fn site_dir(site: &aegir_contract::SiteContext) -> PathBuf {
    Path::new(site.platform.root.as_str()).join("sites").join(site.uri.as_str())
}
