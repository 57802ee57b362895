//! Other machines for tests of many servers: each remote server runs in a network
//! namespace of its own, with its own address and ports, its own directories and its own
//! broker user, joined to the test's machine by a bridge. Processes inside see only their
//! namespace's network: a server's workers reach RabbitMQ through a forwarder on the
//! bridge's address, its sites reach their database server at that server's address, and
//! MariaDB sees each web server connecting from the web server's own address.
//!
//! Needs root (network namespaces, a bridge, MariaDB and nginx started as root), as the
//! rest of the end-to-end tests do.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::Rng;
use tokio::process::{Child, Command};

use crate::{PATIENCE, System, bin, free_port, random_suffix, wait_for, write_nginx_conf};

/// Runs a program to its end and fails the test, with its output, when it fails.
fn run(program: &str, args: &[&str]) {
    let out =
        std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge with an address of its own on the test's machine, and the namespaces on it.
pub struct Network {
    id: String,
    bridge: String,
    prefix: [u8; 3],
    next: u8,
    namespaces: Vec<String>,
    forwarders: Vec<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Network {
    /// A bridge on a `10.x.y.0/24` no interface of this machine uses yet.
    pub fn create() -> Network {
        let used = std::process::Command::new("ip").args(["-4", "-o", "addr"]).output().expect("ip runs").stdout;
        let used = String::from_utf8_lossy(&used).into_owned();
        let prefix = loop {
            let (a, b) = (rand::rng().random_range(200..=250u8), rand::rng().random_range(1..=254u8));
            if !used.contains(&format!("10.{a}.{b}.")) {
                break [10, a, b];
            }
        };
        let id = random_suffix().to_lowercase().chars().take(6).collect::<String>();
        let bridge = format!("aegbr{id}");
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        let network = Network { id, bridge, prefix, next: 2, namespaces: Vec::new(), forwarders: Vec::new() };
        run("ip", &["addr", "add", &format!("{}/24", network.gateway()), "dev", &network.bridge]);
        run("ip", &["link", "set", &network.bridge, "up"]);
        network
    }

    /// The test machine's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1)
    }

    /// A new machine: a namespace with loopback and one interface on the bridge.
    pub fn machine(&mut self, label: &str) -> Machine {
        let n = self.next;
        self.next += 1;
        let ns = format!("aegir-{}-{label}", self.id);
        let veth = format!("aegv{}{n}", self.id);
        let addr = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], n);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        run("ip", &["link", "set", &veth, "master", &self.bridge, "up"]);
        run("ip", &["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        Machine { label: label.to_owned(), ns, addr }
    }

    /// Makes `to` (a service of the test's machine listening on loopback) reachable from
    /// the machines at the bridge address and the same port.
    pub async fn forward(&mut self, to: SocketAddr) -> SocketAddr {
        let at = SocketAddr::from((self.gateway(), to.port()));
        if self.forwarders.iter().any(|(target, _)| *target == to) {
            return at;
        }
        let listener = tokio::net::TcpListener::bind(at).await.unwrap_or_else(|e| panic!("cannot listen on {at}: {e}"));
        self.forwarders.push((
            to,
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }),
        ));
        at
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for (_, forwarder) in &self.forwarders {
            forwarder.abort();
        }
        for ns in &self.namespaces {
            // Whatever still runs in there (daemonized nginx, php-fpm children).
            if let Ok(out) = std::process::Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = std::process::Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::process::Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

/// One machine: a network namespace and its address on the bridge.
#[derive(Debug, Clone)]
pub struct Machine {
    pub label: String,
    pub ns: String,
    pub addr: Ipv4Addr,
}

impl Machine {
    /// `program` run inside this machine's network.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns]).arg(program);
        command
    }
}

/// Makes a RabbitMQ user on `vhost` with deploy/rabbitmq-users.sh, which sets what it
/// may do: `role` is e.g. `["server", "server_web2"]` or `["billing", "acme"]`.
pub fn broker_user(vhost: &str, role: &[&str], user: &str, password: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rabbitmq-users.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(["--vhost", vhost])
        .args(role)
        .arg(user)
        .env("AEGIR_BROKER_PASSWORD", password)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "rabbitmq-users.sh: {}", String::from_utf8_lossy(&out.stderr));
}

/// A user for `server`'s workers on `vhost`.
pub fn broker_server_user(vhost: &str, server: &str, user: &str, password: &str) {
    broker_user(vhost, &["server", server], user, password);
}

/// Broker users that are deleted when the test ends, however it ends.
#[derive(Default)]
pub struct BrokerUsers(pub Vec<String>);

impl Drop for BrokerUsers {
    fn drop(&mut self) {
        for user in &self.0 {
            let _ = std::process::Command::new("rabbitmqctl").args(["delete_user", user]).output();
        }
    }
}

/// What runs on a remote server besides its workers.
enum Stack {
    /// nginx (daemonized; stopped through its pid file) and php-fpm.
    Web { nginx_conf: PathBuf, fpm_socket: PathBuf },
    /// MariaDB with an admin account for the db-worker.
    Db { admin_password: String },
}

/// A server of its own on its own machine: its services and its workers, which connect to
/// the broker with the server's own user.
pub struct RemoteServer {
    /// `server_<label>`
    pub name: String,
    pub machine: Machine,
    pub dir: PathBuf,
    pub broker_user: String,
    platforms: PathBuf,
    broker_url: String,
    system_env: Vec<(String, String)>,
    stack: Stack,
    services: Vec<Child>,
    workers: HashMap<&'static str, Child>,
    health: HashMap<&'static str, u16>,
}

impl RemoteServer {
    /// A web server (nginx and php-fpm on port 80 of its own address) with its
    /// http-worker and backup-worker. Its workers wait for their queues, which the
    /// control plane declares when the server is saved.
    pub async fn web(system: &System, network: &mut Network, users: &mut BrokerUsers, label: &str) -> RemoteServer {
        let mut server = Self::new(system, network, users, label).await;
        for sub in ["config/vhost.d", "nginx/tmp", "fpm"] {
            std::fs::create_dir_all(server.dir.join(sub)).unwrap();
        }
        std::fs::create_dir_all(server.platforms_dir()).unwrap();
        let nginx_conf = write_nginx_conf(&server.dir);
        let status = server.machine.command("nginx").arg("-c").arg(&nginx_conf).status().await.expect("nginx runs");
        assert!(status.success(), "nginx did not start on {}", server.machine.label);
        let fpm_socket = server.dir.join("fpm/php-fpm.sock");
        server.services.push(start_php_fpm(&server.machine, &server.dir.join("fpm"), &fpm_socket).await);
        server.stack = Stack::Web { nginx_conf, fpm_socket };
        for worker in ["http-worker", "backup-worker"] {
            server.spawn(worker);
        }
        server
    }

    /// A database server (MariaDB on port 3306 of its own address) with its db-worker.
    pub async fn db(system: &System, network: &mut Network, users: &mut BrokerUsers, label: &str) -> RemoteServer {
        let mut server = Self::new(system, network, users, label).await;
        let admin_password = format!("Adm{}", random_suffix());
        let mariadb = start_mariadb(&server.machine, &server.dir.join("mariadb"), &admin_password).await;
        server.services.push(mariadb);
        server.stack = Stack::Db { admin_password };
        server.spawn("db-worker");
        server
    }

    async fn new(system: &System, network: &mut Network, users: &mut BrokerUsers, label: &str) -> RemoteServer {
        let machine = network.machine(label);
        let name = format!("server_{label}");
        let dir = system.dir.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let broker_user = format!("aegir-{label}-{}", random_suffix().to_lowercase());
        let password = format!("Pw{}", random_suffix());
        broker_server_user(&system.vhost, &name, &broker_user, &password);
        users.0.push(broker_user.clone());
        let broker = network.forward(broker_address()).await;
        let broker_url = format!("amqp://{broker_user}:{password}@{broker}/{}", system.vhost);
        let server = aegir_contract::ServerName::parse(&name).expect("a valid server name");
        let system_env = vec![
            ("AEGIR_WORKER_KEY".to_owned(), system.master_key.server(&server).to_hex()),
            ("AEGIR_BACKUP_STORE".to_owned(), format!("file://{}", system.backup_store_dir().display())),
        ];
        RemoteServer {
            name,
            machine,
            dir,
            broker_user,
            platforms: system.platforms_dir().join(format!("server_{label}")),
            broker_url,
            system_env,
            stack: Stack::Db { admin_password: String::new() },
            services: Vec::new(),
            workers: HashMap::new(),
            health: HashMap::new(),
        }
    }

    /// `amqp://` for this server's broker user, through the forwarder.
    pub fn broker_url(&self) -> String {
        self.broker_url.clone()
    }

    /// The platforms directory of a web server: its own, below the system's allowed
    /// platform root (the machines here share one file system).
    pub fn platforms_dir(&self) -> PathBuf {
        self.platforms.clone()
    }

    /// `mysql://ADMIN:PASSWORD@ADDRESS:3306` of a database server, for `--master_db`.
    pub fn master_db(&self) -> String {
        match &self.stack {
            Stack::Db { admin_password } => format!("mysql://aegir_admin:{admin_password}@{}:3306", self.machine.addr),
            Stack::Web { .. } => panic!("{} is a web server", self.name),
        }
    }

    /// A connection to a database server's MariaDB as its admin, from the test's machine.
    pub async fn mariadb(&self) -> sqlx::MySqlConnection {
        use sqlx::Connection;
        let Stack::Db { admin_password } = &self.stack else { panic!("{} is a web server", self.name) };
        let options = sqlx::mysql::MySqlConnectOptions::new()
            .host(&self.machine.addr.to_string())
            .port(3306)
            .username("aegir_admin")
            .password(admin_password);
        sqlx::MySqlConnection::connect_with(&options).await.expect("MariaDB reachable as admin")
    }

    fn log_path(&self, worker: &str) -> PathBuf {
        self.dir.join(format!("{worker}.log"))
    }

    /// The worker's log so far.
    pub fn log(&self, worker: &str) -> String {
        std::fs::read_to_string(self.log_path(worker)).unwrap_or_default()
    }

    /// Starts (or restarts) one of this server's workers.
    pub fn spawn(&mut self, worker: &'static str) {
        let port = *self.health.entry(worker).or_insert_with(free_port);
        let mut env = self.system_env.clone();
        env.extend([
            ("AEGIR_AMQP_URL".to_owned(), self.broker_url.clone()),
            ("AEGIR_SERVER".to_owned(), self.name.clone()),
            // The control plane declares a server's queues; its workers may not.
            ("AEGIR_DECLARE_QUEUES".to_owned(), "false".to_owned()),
            ("AEGIR_HEALTH_LISTEN".to_owned(), format!("{}:{port}", self.machine.addr)),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ]);
        let platforms = self.platforms_dir().display().to_string();
        if matches!(worker, "http-worker" | "backup-worker") {
            env.push(("AEGIR_PLATFORM_ROOTS".to_owned(), platforms));
        }
        if let (Stack::Web { nginx_conf, fpm_socket }, "http-worker") = (&self.stack, worker) {
            env.push(("AEGIR_HTTP_CONFIG_DIR".to_owned(), self.dir.join("config").display().to_string()));
            env.push(("AEGIR_NGINX_CONF".to_owned(), nginx_conf.display().to_string()));
            env.push(("AEGIR_PHP_FPM_SOCKET".to_owned(), fpm_socket.display().to_string()));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(worker)).unwrap();
        let child = self
            .machine
            .command(bin(worker))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {worker} of {}: {e}", self.name));
        self.workers.insert(worker, child);
    }

    /// `kill -9` one of this server's workers.
    pub async fn kill9(&mut self, worker: &'static str) {
        let mut child = self.workers.remove(worker).unwrap_or_else(|| panic!("{worker} is not running"));
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// The process id of a running worker (as named in task logs: `started on HOST:PID`).
    pub fn pid(&self, worker: &str) -> u32 {
        self.workers.get(worker).and_then(Child::id).unwrap_or_else(|| panic!("{worker} is not running"))
    }

    pub async fn wait_healthy(&self, worker: &'static str) {
        let url = format!("http://{}:{}/healthz", self.machine.addr, self.health[worker]);
        let client = reqwest::Client::new();
        let healthy =
            wait_for(PATIENCE, || async { matches!(client.get(&url).send().await, Ok(r) if r.status().is_success()) })
                .await;
        assert!(healthy, "{worker} of {} did not become healthy at {url}:\n{}", self.name, self.log(worker));
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for worker in self.workers.keys() {
                let log = self.log(worker);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!("----- {} {worker} log (last lines) -----\n{}", self.name, tail.join("\n"));
            }
        }
        for child in self.workers.values_mut().chain(self.services.iter_mut()) {
            let _ = child.start_kill();
        }
        if let Stack::Web { nginx_conf, .. } = &self.stack {
            let _ = std::process::Command::new("nginx").arg("-c").arg(nginx_conf).args(["-s", "stop"]).status();
        }
    }
}

/// Where the test's RabbitMQ listens (the host and port of AEGIR_TEST_AMQP_URL).
fn broker_address() -> SocketAddr {
    let base = crate::amqp_base();
    let (_, rest) = base.split_once('@').expect("the broker URL has credentials");
    let hostport = rest.split('/').next().unwrap();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5672"));
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    SocketAddr::new(host.parse().expect("the broker's address is an IP address"), port.parse().unwrap())
}

/// A php-fpm inside `machine`, so the sites' PHP connects from the machine's address.
async fn start_php_fpm(machine: &Machine, dir: &Path, socket: &Path) -> Child {
    let program = std::fs::read_dir("/usr/sbin")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php-fpm")))
        .expect("php-fpm is installed");
    let d = dir.display();
    let conf = format!(
        "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/error.log\ndaemonize = no\n\
         [www]\nuser = www-data\ngroup = www-data\nlisten = {s}\nlisten.mode = 0666\n\
         pm = ondemand\npm.max_children = 4\n",
        s = socket.display()
    );
    let path = dir.join("php-fpm.conf");
    std::fs::write(&path, conf).unwrap();
    let child = machine
        .command(&program)
        .arg("--fpm-config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let up = wait_for(PATIENCE, || async { socket.exists() }).await;
    assert!(up, "php-fpm on {} did not open {}", machine.label, socket.display());
    child
}

/// A MariaDB of its own inside `machine`, listening on the machine's address, with an
/// admin account `aegir_admin` the db-worker uses.
async fn start_mariadb(machine: &Machine, dir: &Path, admin_password: &str) -> Child {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    run("chown", &["-R", "mysql:mysql", &dir.display().to_string()]);
    let datadir = format!("--datadir={}", data.display());
    run(
        "mariadb-install-db",
        &["--no-defaults", &datadir, "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"],
    );
    let socket = dir.join("mysqld.sock");
    let child = machine
        .command("mariadbd")
        .args(["--no-defaults", &datadir, "--user=mysql", "--port=3306", "--skip-name-resolve", "--skip-log-bin"])
        .arg(format!("--bind-address={}", machine.addr))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args(["--innodb-buffer-pool-size=16M", "--max-connections=60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mariadbd starts");
    let up = wait_for(PATIENCE, || async { socket.exists() }).await;
    assert!(
        up,
        "MariaDB on {} did not open its socket: {}",
        machine.label,
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    // Connections from anywhere on the servers' network, as an admin account over TCP is.
    let sql = format!(
        "CREATE USER IF NOT EXISTS 'aegir_admin'@'%' IDENTIFIED BY '{admin_password}'; \
         GRANT ALL PRIVILEGES ON *.* TO 'aegir_admin'@'%' WITH GRANT OPTION;"
    );
    let socket_arg = format!("--socket={}", socket.display());
    let done = wait_for(Duration::from_secs(30), || {
        let (socket_arg, sql) = (socket_arg.clone(), sql.clone());
        async move {
            let out = Command::new("mariadb")
                .args(["--no-defaults", &socket_arg, "-uroot", "-e", &sql])
                .output()
                .await
                .expect("the mariadb client runs");
            out.status.success()
        }
    })
    .await;
    assert!(done, "cannot make the admin account on {}'s MariaDB", machine.label);
    child
}
