//! Starts the built backup-worker against a RabbitMQ vhost of its own and checks what an
//! operator relies on: `/healthz` answers, the server's backup queue exists, and SIGTERM
//! stops the worker cleanly.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A RabbitMQ vhost that exists for one test and is deleted afterwards.
struct Vhost {
    name: String,
}

impl Vhost {
    fn create(name: &str, user: &str) -> Self {
        rabbitmqctl(&["add_vhost", name]);
        let vhost = Self { name: name.to_owned() };
        rabbitmqctl(&["set_permissions", "-p", name, user, ".*", ".*", ".*"]);
        vhost
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["delete_vhost", &self.name]).output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (deploy/test.sh installs RabbitMQ)");
    assert!(out.status.success(), "rabbitmqctl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// `(scheme://user:password@host:port, user)` of the test broker.
fn broker_base() -> (String, String) {
    let url = std::env::var("AEGIR_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    let (scheme, rest) =
        url.split_once("://").expect("AEGIR_TEST_AMQP_URL must look like amqp://user:pass@host:port/vhost");
    let authority = rest.split('/').next().unwrap_or(rest);
    let user = match authority.rsplit_once('@') {
        Some((credentials, _)) => credentials.split(':').next().unwrap_or("guest").to_owned(),
        None => "guest".to_owned(),
    };
    (format!("{scheme}://{authority}"), user)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the worker if a test fails before stopping it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Worker {
    fn assert_running(&mut self) {
        if let Some(status) = self.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("backup-worker exited early ({status}):\n{stderr}");
        }
    }
}

async fn wait_for_health(worker: &mut Worker, url: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        worker.assert_running();
        if let Ok(resp) = http.get(url).timeout(Duration::from_secs(2)).send().await
            && resp.status() == reqwest::StatusCode::OK
        {
            return resp.json().await.expect("/healthz answers JSON");
        }
        assert!(Instant::now() < deadline, "{url} did not answer 200 within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Passive declare: succeeds only when the queue exists, and never creates it.
async fn wait_for_queue(amqp_url: &str, queue: &str) {
    let connection =
        Connection::connect(amqp_url, ConnectionProperties::default()).await.expect("the test connects to its vhost");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A failed passive declare closes its channel, so every try gets a new one.
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        match channel.queue_declare(queue.into(), passive, FieldTable::default()).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "queue {queue} was not declared within 30 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = connection.close(0, "test done".into()).await;
}

#[tokio::test]
async fn worker_reports_healthy_and_consumes_its_servers_backup_queue() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let server = format!("server_t{suffix}");
    let (base, user) = broker_base();
    let vhost = Vhost::create(&format!("aegir_test_backup_{suffix}"), &user);
    let amqp_url = format!("{base}/{}", vhost.name);
    let health_addr = format!("127.0.0.1:{}", free_port());
    let backups = tempfile::tempdir().unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_backup-worker"))
        .env("AEGIR_AMQP_URL", &amqp_url)
        .env("AEGIR_SERVER", &server)
        // Any well-formed key: this test sends the worker no step.
        .env("AEGIR_WORKER_KEY", "5a".repeat(32))
        .env("AEGIR_HEALTH_LISTEN", &health_addr)
        .env("AEGIR_BACKUP_STORE", format!("file://{}", backups.path().join("store").display()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the backup-worker binary starts");
    let mut worker = Worker(child);

    let health = wait_for_health(&mut worker, &format!("http://{health_addr}/healthz")).await;
    assert_eq!(health["broker_connected"], serde_json::Value::Bool(true), "{health}");
    let queue = format!("{server}.backup");
    assert_eq!(health["queue"], serde_json::Value::String(queue.clone()), "{health}");

    wait_for_queue(&amqp_url, &queue).await;

    // SIGTERM is how the deployment scripts stop a worker: it must exit cleanly.
    let pid = worker.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "backup-worker did not stop within 20 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "backup-worker exited with {status} after SIGTERM");
}
