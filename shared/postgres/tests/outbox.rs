//! The outbox against real PostgreSQL and RabbitMQ: a committed message is published, a
//! rolled-back one never is, and a delayed one waits; handed-off messages go from
//! memory, and one its writer never handed off is polled after its grace.

use std::time::Duration;

use aegir_amqp::Broker;
use aegir_contract::{LogLevel, LogLine, Message, TaskLog};
use aegir_postgres::{Outbox, Staged};
use lapin::options::BasicGetOptions;
use rand::distr::{Alphanumeric, SampleString};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Scratch {
    vhost: String,
    amqp_url: String,
    admin_url: String,
    database: String,
    database_url: String,
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Scratch {
    fn new() -> Self {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase();
        let vhost = format!("aegir_outbox_{suffix}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let pg = std::env::var("AEGIR_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let root = pg.rsplit_once('/').map_or(pg.as_str(), |(root, _)| root).to_owned();
        let database = format!("aegir_outbox_{suffix}");
        Self {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
            database_url: format!("{root}/{database}"),
            admin_url: pg,
            database,
            vhost,
        }
    }
}

impl Scratch {
    /// The scratch database with an outbox table, a broker handle, and a channel to read
    /// what is published (with its connection, kept open as long as it is used).
    async fn connect(&self) -> (sqlx::PgPool, Broker, lapin::Connection, lapin::Channel) {
        let pool = aegir_postgres::connect(&self.database_url, Some("outbox_test"), 4).await.unwrap();
        sqlx::query(
            "CREATE TABLE outbox (id bigserial PRIMARY KEY, exchange text NOT NULL, routing_key text NOT NULL,
             body bytea NOT NULL, traceparent text, publish_after timestamptz NOT NULL DEFAULT now())",
        )
        .execute(&pool)
        .await
        .unwrap();
        let broker = Broker::new(self.amqp_url.clone(), "outbox test");
        broker.ready().await;
        let conn = lapin::Connection::connect(&self.amqp_url, Default::default()).await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        (pool, broker, conn, channel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["delete_vhost", &self.vhost]).output();
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", &self.admin_url, "-c"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database))
            .output();
    }
}

/// A message of one log line.
fn line(message: &str) -> TaskLog {
    let task_id = Uuid::now_v7();
    let line = LogLine {
        id: Uuid::now_v7(),
        task_id,
        step: None,
        level: LogLevel::Info,
        message: message.into(),
        source: "test".into(),
        at: chrono::Utc::now(),
    };
    TaskLog { task_id, lines: vec![line] }
}

async fn next_event(channel: &lapin::Channel) -> Option<LogLine> {
    let got = channel.basic_get("api.events".into(), BasicGetOptions { no_ack: true }).await.unwrap();
    got.map(|m| TaskLog::decode(&m.delivery.data).expect("a valid log message").lines.remove(0))
}

async fn wait_event(channel: &lapin::Channel, within: Duration) -> Option<LogLine> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(line) = next_event(channel).await {
            return Some(line);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_messages_are_published_rolled_back_ones_never_and_delayed_ones_later() {
    let scratch = Scratch::new();
    let (pool, broker, _conn, channel) = scratch.connect().await;
    let outbox = Outbox::new();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));

    let mut tx = pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &line("rolled back"), None).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &line("first"), None).await.unwrap();
    Outbox::enqueue(&mut tx, &line("second"), None).await.unwrap();
    Outbox::enqueue(&mut tx, &line("delayed"), Some(Duration::from_millis(1500))).await.unwrap();
    tx.commit().await.unwrap();
    outbox.wake();

    let first = wait_event(&channel, Duration::from_secs(10)).await.expect("first published");
    let second = wait_event(&channel, Duration::from_secs(10)).await.expect("second published");
    assert_eq!((first.message.as_str(), second.message.as_str()), ("first", "second"), "in order");
    assert!(next_event(&channel).await.is_none(), "the delayed message waits");
    let delayed = wait_event(&channel, Duration::from_secs(10)).await.expect("delayed published");
    assert_eq!(delayed.message, "delayed");
    assert!(wait_event(&channel, Duration::from_millis(1500)).await.is_none(), "the rolled-back one never comes");

    let left: (i64,) = sqlx::query_as("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left.0, 0, "published rows are deleted");

    shutdown.cancel();
    relay.await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_messages_are_written_together_in_order_and_keep_their_delay() {
    let scratch = Scratch::new();
    let (pool, broker, _conn, channel) = scratch.connect().await;
    let outbox = Outbox::new();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));

    let mut tx = pool.begin().await.unwrap();
    let mut staged = Staged::new();
    staged.push(&line("rolled back"), None);
    let rolled_back = outbox.write(&mut tx, staged).await.unwrap();
    tx.rollback().await.unwrap();
    drop(rolled_back);
    let mut tx = pool.begin().await.unwrap();
    let mut staged = Staged::new();
    staged.push(&line("delayed"), Some(Duration::from_millis(1500)));
    for n in 0..50 {
        staged.push(&line(&format!("line {n}")), None);
    }
    assert_eq!(staged.len(), 51);
    let written = outbox.write(&mut tx, staged).await.unwrap();
    let nothing = outbox.write(&mut tx, Staged::new()).await.unwrap();
    tx.commit().await.unwrap();
    outbox.hand_off(written);
    outbox.hand_off(nothing);

    for n in 0..50 {
        let got = wait_event(&channel, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("line {n} published"));
        assert_eq!(got.message, format!("line {n}"), "in the order staged");
    }
    let delayed = wait_event(&channel, Duration::from_secs(10)).await.expect("delayed published");
    assert_eq!(delayed.message, "delayed");
    assert!(wait_event(&channel, Duration::from_millis(1500)).await.is_none(), "the rolled-back one never comes");

    let left: (i64,) = sqlx::query_as("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left.0, 0, "published rows are deleted");

    shutdown.cancel();
    relay.await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handed_off_messages_go_from_memory_and_ones_never_handed_off_are_polled_after_their_grace() {
    let scratch = Scratch::new();
    let (pool, broker, _conn, channel) = scratch.connect().await;
    let shutdown = CancellationToken::new();
    let staged = |messages: &[&str]| {
        let mut staged = Staged::new();
        for message in messages {
            staged.push(&line(message), None);
        }
        staged
    };

    // An hour's grace: whatever comes now came from memory, not from the poll.
    let outbox = Outbox::with_grace(Duration::from_secs(3600));
    let relay = tokio::spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));
    let mut tx = pool.begin().await.unwrap();
    let rolled_back = outbox.write(&mut tx, staged(&["rolled back"])).await.unwrap();
    tx.rollback().await.unwrap();
    drop(rolled_back);
    let mut tx = pool.begin().await.unwrap();
    let never_handed = outbox.write(&mut tx, staged(&["never handed off"])).await.unwrap();
    tx.commit().await.unwrap();
    drop(never_handed);
    let mut tx = pool.begin().await.unwrap();
    let mut first = staged(&["first", "second"]);
    first.push(&line("delayed"), Some(Duration::from_millis(1500)));
    let first = outbox.write(&mut tx, first).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let then = outbox.write(&mut tx, staged(&["third"])).await.unwrap();
    tx.commit().await.unwrap();
    outbox.hand_off(first);
    outbox.hand_off(then);

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(wait_event(&channel, Duration::from_secs(10)).await.expect("handed-off line published").message);
    }
    assert_eq!(got, ["first", "second", "third"], "in the order handed off");
    let delayed = wait_event(&channel, Duration::from_secs(10)).await.expect("delayed published");
    assert_eq!(delayed.message, "delayed", "a delayed one is polled when due");
    assert!(wait_event(&channel, Duration::from_millis(1500)).await.is_none(), "nothing else comes");
    let left: Vec<String> =
        sqlx::query_scalar("SELECT convert_from(body, 'UTF8') FROM outbox").fetch_all(&pool).await.unwrap();
    assert_eq!(left.len(), 1, "published rows are deleted: {left:?}");
    assert!(left[0].contains("never handed off"), "{left:?}");
    shutdown.cancel();
    relay.await.unwrap();

    // What a writer committed but never handed off (it crashed) is polled after the grace.
    let shutdown = CancellationToken::new();
    sqlx::query("UPDATE outbox SET publish_after = now() + interval '1 second'").execute(&pool).await.unwrap();
    let relay =
        tokio::spawn(Outbox::with_grace(Duration::from_secs(1)).relay(pool.clone(), broker.clone(), shutdown.clone()));
    let late = wait_event(&channel, Duration::from_secs(10)).await.expect("the row left behind is published");
    assert_eq!(late.message, "never handed off");
    let left: (i64,) = sqlx::query_as("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left.0, 0, "and deleted");
    shutdown.cancel();
    relay.await.unwrap();

    // A long run of handed-off rows does not hold back a polled one.
    const STREAM: usize = 10_000;
    let shutdown = CancellationToken::new();
    let outbox = Outbox::new();
    let relay = tokio::spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));
    let names: Vec<String> = (0..STREAM).map(|n| format!("stream {n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut tx = pool.begin().await.unwrap();
    let stream = outbox.write(&mut tx, staged(&names)).await.unwrap();
    tx.commit().await.unwrap();
    outbox.hand_off(stream);
    let mut tx = pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &line("polled"), None).await.unwrap();
    tx.commit().await.unwrap();
    outbox.wake();
    let mut order = Vec::new();
    while let Some(line) = wait_event(&channel, Duration::from_secs(10)).await {
        order.push(line.message);
        if order.len() == STREAM + 1 {
            break;
        }
    }
    let polled = order.iter().position(|m| m == "polled").expect("the polled row is published");
    assert!(polled < STREAM / 2, "the polled row waited for the handed-off ones: {polled} of {}", order.len());
    shutdown.cancel();
    relay.await.unwrap();
    pool.close().await;
}

/// A row handed off while the relay reads the table goes out before a row that read
/// finds and that was written after it: a task's request before its cancel.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_handed_off_while_the_table_is_read_goes_out_before_a_later_polled_one() {
    let scratch = Scratch::new();
    let (pool, broker, _conn, channel) = scratch.connect().await;
    let shutdown = CancellationToken::new();
    // An hour's grace: the handed-off row can only go from memory.
    let outbox = Outbox::with_grace(Duration::from_secs(3600));
    let relay = tokio::spawn(outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));

    // The relay's read of the table waits for this transaction's lock.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE outbox IN EXCLUSIVE MODE").execute(&mut *writer).await.unwrap();
    outbox.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the relay never read the table");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut request = Staged::new();
    request.push(&line("request"), None);
    let request = outbox.write(&mut writer, request).await.unwrap();
    // Handed off while the relay waits in its read (a service hands off after its commit;
    // the read waiting here is what that commit would race with).
    outbox.hand_off(request);
    Outbox::enqueue(&mut writer, &line("cancel"), None).await.unwrap();
    writer.commit().await.unwrap();

    let mut order = Vec::new();
    for _ in 0..2 {
        order.push(wait_event(&channel, Duration::from_secs(10)).await.expect("both are published").message);
    }
    assert_eq!(order, ["request", "cancel"], "in the order they were written");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0, "both rows are deleted");
    shutdown.cancel();
    relay.await.unwrap();
    pool.close().await;
}
