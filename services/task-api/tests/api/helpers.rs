//! A task-api started in-process for each test, on port 0, with its own PostgreSQL
//! database (which task-api creates itself) and its own RabbitMQ vhost.

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use aegir_amqp::signing::{MasterKey, SigningKey};
use aegir_amqp::topology::QueueName;
use aegir_amqp::{Broker, Publishable};
use aegir_config::{CommonArgs, DatabaseArgs, LogFormat, SigningKeyArgs};
use aegir_contract::{
    ContextName, LogLevel, LogLine, Message, Route, StepFacts, StepOutcome, StepResult, TaskFinished, TaskKind,
    TaskLog, TaskOutcome, TaskRequested, TaskStarted,
};
use chrono::Utc;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection as _, Executor, PgPool};
use task_api::{Config, PlatformRoots};

/// The master key the tests' task-api signs with.
const SIGNING_KEY: &str = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988";
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const WAIT: Duration = Duration::from_secs(30);

pub struct TestApp {
    pub base: String,
    /// Sends the admin's token with every request.
    pub http: reqwest::Client,
    /// The token task-api made for user `admin` at start.
    pub admin_token: String,
    /// The test's own view of the app's database.
    pub pool: PgPool,
    /// The test's own broker connection, for publishing events.
    pub broker: Broker,
    amqp_url: String,
    database: String,
    vhost: String,
    shutdown: CancellationToken,
    app: Option<JoinHandle<()>>,
}

/// An HTTP client sending `Authorization: Bearer <token>` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("a token is a valid header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers).build().expect("an HTTP client")
}

/// Spans carry OpenTelemetry contexts, as under aegir-telemetry, so trace propagation
/// can be checked; nothing is printed or exported.
fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;

        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("task-api-tests"));
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

async fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl").args(args).output().await.expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn admin_url() -> String {
    std::env::var("AEGIR_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

impl TestApp {
    pub async fn spawn() -> Self {
        init_tracing();
        let name = format!("aegir_test_{}", Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]).await;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]).await;
        let amqp_url = format!("amqp://guest:guest@127.0.0.1:5672/{name}");
        let admin: PgConnectOptions = admin_url().parse().expect("AEGIR_TEST_DATABASE_URL is a PostgreSQL URL");
        let database_url = admin.clone().database(&name).to_url_lossy().to_string();

        let token_file = std::env::temp_dir().join(format!("{name}.admin-token"));
        let config = Config {
            common: CommonArgs { amqp_url: amqp_url.clone(), log_format: LogFormat::Text },
            database: DatabaseArgs { database_url: database_url.clone(), database_pool: 5 },
            signing: SigningKeyArgs { signing_key: Some(SIGNING_KEY.into()), signing_key_file: None },
            listen: "127.0.0.1:0".parse().unwrap(),
            platform_roots: "/var/aegir/platforms:/srv/platforms".parse::<PlatformRoots>().unwrap(),
            // No pruning in the background: the retention tests prune when they mean to,
            // and a prune racing their inserts would take rows before they look.
            task_retention_days: 0,
            // Scheduled tasks would mix with the ones each test asks for.
            cron_interval_secs: 0,
            stats_interval_secs: 0,
            backup_interval_secs: 0,
            backup_keep_daily: 0,
            backup_keep_weekly: 0,
            cert_interval_secs: 0,
            cert_renew_days: 30,
            cert_retry_secs: 600,
            bootstrap_admin_token_file: Some(token_file.clone()),
            trust_forwarded_for: false,
        };
        let shutdown = CancellationToken::new();
        let running = task_api::start(config, shutdown.clone()).await.expect("task-api starts");
        let base = format!("http://{}", running.local_addr());
        let app = tokio::spawn(running.wait());
        let admin_token = std::fs::read_to_string(&token_file).expect("task-api wrote the admin token");
        let _ = std::fs::remove_file(&token_file);
        let admin_token = admin_token.trim().to_owned();

        let pool = PgPool::connect(&database_url).await.expect("the test connects to the app's database");
        let broker = Broker::new(amqp_url.as_str(), "task-api tests");
        // Declares the topology, so the queues the test reads exist.
        broker.ready().await;
        Self {
            base,
            http: client_with_token(&admin_token),
            admin_token,
            pool,
            broker,
            amqp_url,
            database: name.clone(),
            vhost: name,
            shutdown,
            app: Some(app),
        }
    }

    /// Shuts the app down as SIGTERM would and checks it stops in time. Its database and
    /// vhost go when the `TestApp` is dropped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let app = self.app.take().expect("stopped once");
        tokio::time::timeout(WAIT, app).await.expect("task-api stops in time").expect("task-api stops cleanly");
        self.pool.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::answer(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// The body as text, to look for what must never be in it.
    pub async fn get_text(&self, path: &str) -> String {
        self.http.get(self.url(path)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::answer(self.http.put(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn put_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        Self::answer(self.http.put(self.url(path)).body(body).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::answer(self.http.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        Self::answer(self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Rows in one of the app's tables.
    pub async fn count(&self, table: &str) -> i64 {
        let query = match table {
            "servers" => "SELECT count(*) FROM servers",
            "platforms" => "SELECT count(*) FROM platforms",
            "clients" => "SELECT count(*) FROM clients",
            "sites" => "SELECT count(*) FROM sites",
            "site_aliases" => "SELECT count(*) FROM site_aliases",
            "packages" => "SELECT count(*) FROM packages",
            "tasks" => "SELECT count(*) FROM tasks",
            "task_log" => "SELECT count(*) FROM task_log",
            "outbox" => "SELECT count(*) FROM outbox",
            "batches" => "SELECT count(*) FROM batches",
            other => panic!("no table {other}"),
        };
        sqlx::query_scalar(query).fetch_one(&self.pool).await.unwrap()
    }

    async fn channel(&self) -> lapin::Channel {
        let connection = Connection::connect(&self.amqp_url, ConnectionProperties::default()).await.unwrap();
        connection.create_channel().await.unwrap()
    }

    /// The next message on `scheduler.tasks`, with its `traceparent` header.
    pub async fn next_task_request(&self) -> (TaskRequested, Option<String>) {
        let channel = self.channel().await;
        let queue = QueueName::SchedulerTasks.name();
        eventually("a message on scheduler.tasks", || async {
            let message = channel.basic_get(queue.clone().into(), BasicGetOptions::default()).await.unwrap()?;
            let delivery = message.delivery;
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            let traceparent = delivery.properties.headers().as_ref().and_then(|h| match h.inner().get("traceparent") {
                Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
                _ => None,
            });
            // Every request is signed with the control key the scheduler checks.
            let master = MasterKey::new(SigningKey::parse(SIGNING_KEY).unwrap());
            master.control().verify_delivery(&delivery).expect("a task request signed with the control key");
            Some((TaskRequested::decode(&delivery.data).expect("a valid TaskRequested"), traceparent))
        })
        .await
    }

    /// Messages waiting in a queue (a passive declare: the queue is not changed).
    pub async fn queue_depth(&self, queue: QueueName) -> u32 {
        let channel = self.channel().await;
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        channel.queue_declare(queue.name().into(), options, FieldTable::default()).await.unwrap().message_count()
    }

    pub async fn publish<M: Publishable>(&self, message: &M) {
        self.broker.publish(message).await.expect("the broker takes the event");
    }

    /// Waits until `GET /api/v1/tasks/{id}` shows `status`.
    pub async fn task_reaches(&self, id: Uuid, status: &str) -> Value {
        eventually(&format!("task {id} to be {status}"), || async {
            let (_, task) = self.get(&format!("/api/v1/tasks/{id}")).await;
            (task["status"] == status).then_some(task)
        })
        .await
    }

    /// Waits until the task's log holds `lines` lines; returns them.
    pub async fn log_reaches(&self, id: Uuid, lines: usize) -> Vec<Value> {
        eventually(&format!("{lines} log lines of task {id}"), || async {
            let (_, log) = self.get(&format!("/api/v1/tasks/{id}/log")).await;
            let items = log["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= lines).then_some(items)
        })
        .await
    }
}

impl Drop for TestApp {
    /// Removes the database and the vhost, also when the test failed. The test's runtime
    /// may be unwinding, so this runs on a runtime of its own.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let (database, vhost) = (self.database.clone(), self.vhost.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = PgConnectOptions::connect(&admin_url().parse()?).await?;
                admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))).await?;
                admin.close().await?;
                let deleted = Command::new("rabbitmqctl").args(["delete_vhost", &vhost]).output().await?;
                if !deleted.status.success() {
                    eprintln!("could not delete vhost {vhost}: {}", String::from_utf8_lossy(&deleted.stderr));
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not clean up after the test ({}): {e}", self.database);
        }
    }
}

/// Retries `probe` until it gives a value, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks an error answer: its status, code and field.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"].as_str(), field, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// A message of one line.
pub fn log_line(task_id: Uuid, message: &str) -> TaskLog {
    TaskLog { task_id, lines: vec![line(task_id, message)] }
}

pub fn line(task_id: Uuid, message: &str) -> LogLine {
    LogLine {
        id: Uuid::now_v7(),
        task_id,
        step: Some(0),
        level: LogLevel::Info,
        message: message.to_owned(),
        source: "server_master.http".to_owned(),
        at: Utc::now(),
    }
}

pub fn task_started(task_id: Uuid, context: &str) -> TaskStarted {
    TaskStarted {
        task_id,
        context: ContextName::parse(context).unwrap(),
        kind: TaskKind::Verify,
        steps: 2,
        at: Utc::now(),
        log: vec![],
    }
}

pub fn step_succeeded(task_id: Uuid, step: u32, route: &str, facts: StepFacts) -> StepResult {
    StepResult {
        task_id,
        step,
        attempt: 0,
        route: route.parse::<Route>().unwrap(),
        worker: "test:1".to_owned(),
        outcome: StepOutcome::Success { facts },
        finished_at: Utc::now(),
        log: vec![],
    }
}

pub fn task_finished(task_id: Uuid, outcome: TaskOutcome, reason: Option<&str>) -> TaskFinished {
    TaskFinished {
        task_id,
        context: None,
        kind: Some(TaskKind::Verify),
        outcome,
        reason: reason.map(str::to_owned),
        at: Utc::now(),
        log: vec![],
    }
}
