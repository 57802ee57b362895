//! Broker users with least privilege (deploy/rabbitmq-users.sh): a server's workers run
//! with a user that can read only its own server's queues and publish only results and
//! logs, and RabbitMQ itself refuses that user another server's work. A billing system's
//! user sends commands and reads only its own partner's events.

use aegir_amqp::Broker;
use aegir_amqp::signing::Signer;
use aegir_amqp::topology::{COMMAND_KEY, COMMANDS_EXCHANGE, EVENTS_EXCHANGE, PARTNER_EVENTS_EXCHANGE};
use aegir_contract::PartnerName;
use aegir_e2e::hosts::{BrokerUsers, broker_server_user, broker_user};
use aegir_e2e::{System, amqp_base, mariadb_url, random_suffix};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Asserts that RabbitMQ refused an operation for lack of permission.
fn assert_refused<T>(what: &str, result: Result<T, lapin::Error>) {
    let refused = result.err().unwrap_or_else(|| panic!("the billing user was allowed to {what}"));
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{what}: {refused}");
}

/// `amqp://user:password@host:port/vhost`, the harness's broker with other credentials.
fn url_as(user: &str, password: &str, vhost: &str) -> String {
    let base = amqp_base();
    let (_, rest) = base.split_once('@').expect("the broker URL has credentials");
    let host = rest.split('/').next().unwrap();
    format!("amqp://{user}:{password}@{host}/{vhost}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_workers_run_with_their_own_broker_user_which_cannot_touch_another_servers_work() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let suffix = random_suffix();
    let (own, other) = (format!("aegir-workers-{suffix}"), format!("aegir-other-{suffix}"));
    let _users = BrokerUsers(vec![own.clone(), other.clone()]);
    let password = format!("pw{suffix}");
    broker_server_user(&system.vhost, &system.server, &own, &password);
    broker_server_user(&system.vhost, "server_other", &other, &password);

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

#[tokio::test(flavor = "multi_thread")]
async fn a_billing_user_sends_commands_and_reads_only_its_own_partners_events() {
    let system = System::start().await;
    let suffix = random_suffix();
    let user = format!("aegir-billing-{suffix}");
    let _users = BrokerUsers(vec![user.clone()]);
    let password = format!("pw{suffix}");
    broker_user(&system.vhost, &["billing", "acme"], &user, &password);
    let url = url_as(&user, &password, &system.vhost);
    let conn = Connection::connect(&url, ConnectionProperties::default()).await.expect("the billing user logs in");

    // Its own queue, bound to its own partner's events.
    let queue = "billing.acme.events";
    let channel = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.into(), durable, FieldTable::default()).await.expect("it declares its own queue");
    let bind = |channel: lapin::Channel, exchange: &'static str, key: &'static str| async move {
        channel
            .queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await
    };
    bind(channel.clone(), PARTNER_EVENTS_EXCHANGE, "acme.#").await.expect("it binds its queue to its own events");

    // A refusal closes the channel: each try on a fresh one.
    let fresh = || async { conn.create_channel().await.unwrap() };
    assert_refused("read another partner's events", bind(fresh().await, PARTNER_EVENTS_EXCHANGE, "other.#").await);
    assert_refused("read every step log", bind(fresh().await, EVENTS_EXCHANGE, "#").await);
    let other_queue = fresh().await.queue_declare("billing.other.events".into(), durable, FieldTable::default()).await;
    assert_refused("declare another partner's queue", other_queue);
    let consume = |queue: &'static str| async move {
        fresh()
            .await
            .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
    };
    assert_refused("consume task-api's events", consume("api.events").await);
    assert_refused("consume the commands", consume("api.commands").await);
    let channel = fresh().await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let work = async {
        let key = format!("{}.http", system.server);
        let props = BasicProperties::default();
        channel
            .basic_publish("aegir.work".into(), key.as_str().into(), BasicPublishOptions::default(), b"{}", props)
            .await?
            .await
    };
    assert_refused("publish work", work.await);

    // Commands go through, signed with the partner's key, and the answer comes back on
    // its own queue.
    let signer = Signer::Partner(system.master_key.partner(&PartnerName::parse("acme").unwrap()));
    let billing = Broker::signed_restricted(url.clone(), "billing", signer);
    let command =
        br#"{"partner":"acme","idempotency_key":"c1","command":{"action":"create_client","client":"shopper"}}"#;
    billing.publish_bytes(COMMANDS_EXCHANGE, COMMAND_KEY, command).await.expect("the billing user sends a command");
    let mut answers = fresh()
        .await
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("it consumes its own queue");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), answers.next())
        .await
        .expect("an answer within a minute")
        .expect("the consumer is open")
        .expect("a delivery");
    answer.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(answer.routing_key.as_str(), "acme.command.accepted", "{}", String::from_utf8_lossy(&answer.data));
    let (status, client) = system.get("/api/v1/clients/shopper").await;
    assert_eq!(status, 200, "{client}");
}
