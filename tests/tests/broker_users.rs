//! Broker users with least privilege (deploy/rabbitmq-users.sh): a server's workers run
//! with a user that can read only its own server's queues and publish only results and
//! logs, and RabbitMQ itself refuses that user another server's work.

use std::path::Path;
use std::process::Command;

use aegir_e2e::{System, amqp_base, mariadb_url, random_suffix};
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Makes a worker user for `server` on the test's vhost with `password`.
fn server_user(vhost: &str, server: &str, user: &str, password: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rabbitmq-users.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--vhost", vhost, "server", server, user])
        .env("AEGIR_BROKER_PASSWORD", password)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "rabbitmq-users.sh: {}", String::from_utf8_lossy(&out.stderr));
}

/// `amqp://user:password@host:port/vhost`, the harness's broker with other credentials.
fn url_as(user: &str, password: &str, vhost: &str) -> String {
    let base = amqp_base();
    let (_, rest) = base.split_once('@').expect("the broker URL has credentials");
    let host = rest.split('/').next().unwrap();
    format!("amqp://{user}:{password}@{host}/{vhost}")
}

/// Deletes the users when the test ends, however it ends.
struct Users(Vec<String>);

impl Drop for Users {
    fn drop(&mut self) {
        for user in &self.0 {
            let _ = Command::new("rabbitmqctl").args(["delete_user", user]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_workers_run_with_their_own_broker_user_which_cannot_touch_another_servers_work() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let suffix = random_suffix();
    let (own, other) = (format!("aegir-workers-{suffix}"), format!("aegir-other-{suffix}"));
    let _users = Users(vec![own.clone(), other.clone()]);
    let password = format!("pw{suffix}");
    server_user(&system.vhost, &system.server, &own, &password);
    server_user(&system.vhost, "server_other", &other, &password);

    // The workers again, now under their least-privilege user: they declare nothing.
    let url = url_as(&own, &password, &system.vhost);
    for worker in ["http-worker", "db-worker", "backup-worker"] {
        system.kill9(worker).await;
        system.respawn_with(worker, &[("AEGIR_AMQP_URL", &url), ("AEGIR_DECLARE_QUEUES", "false")]);
    }
    for worker in ["http-worker", "db-worker", "backup-worker"] {
        system.wait_healthy(worker).await;
    }
    let id = system.post_task(&format!("@{}", system.server), "verify").await;
    let view = system.wait_task(&id).await;
    assert_eq!(view["status"], "success", "the workers work with their own user: {view}");

    // Another server's user: RabbitMQ refuses it this server's queue...
    let conn = Connection::connect(&url_as(&other, &password, &system.vhost), ConnectionProperties::default())
        .await
        .expect("the other server's user logs in");
    let queue = format!("{}.http", system.server);
    let channel = conn.create_channel().await.unwrap();
    let refused = channel
        .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("{other} consumed {queue}"));
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");

    // ...and publishing work, to any server.
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let published = async {
        channel
            .basic_publish(
                "aegir.work".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await?
            .await
    }
    .await;
    let refused = published.err().unwrap_or_else(|| panic!("{other} published work"));
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");

    // Its own queue is open to it.
    let channel = conn.create_channel().await.unwrap();
    let own_queue = "server_other.http";
    let open = Connection::connect(&system.amqp_url, ConnectionProperties::default()).await.unwrap();
    let admin = open.create_channel().await.unwrap();
    admin
        .queue_declare(own_queue.into(), lapin::options::QueueDeclareOptions { durable: true, ..Default::default() }, {
            let mut args = lapin::types::FieldTable::default();
            args.insert("x-queue-type".into(), lapin::types::AMQPValue::LongString("quorum".into()));
            args
        })
        .await
        .unwrap();
    channel
        .basic_consume(own_queue.into(), "".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .expect("a server's user consumes its own queue");
}
