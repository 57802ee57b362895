//! The command interface as a billing system uses it: commands published over AMQP,
//! signed with the partner's key, and the answers and task events read from the partner
//! events exchange, with the whole system running, a real WordPress from Debian's
//! package on nginx and php-fpm, and the site asked for over HTTP.

use std::time::Duration;

use aegir_amqp::Broker;
use aegir_amqp::signing::{Signer, SigningKey};
use aegir_amqp::topology::{COMMAND_KEY, COMMANDS_EXCHANGE, PARTNER_EVENTS_EXCHANGE};
use aegir_contract::PartnerName;
use aegir_e2e::{INSTALL_PATIENCE, Options, System, fetch_showing, random_suffix, start_with_php, wait_for};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer};
use serde_json::{Value, json};

/// A billing system: it publishes commands and reads what task-api tells it.
struct Partner {
    name: String,
    /// Signs with the partner's key, as `aegir keys partner NAME` prints it.
    broker: Broker,
    events: Consumer,
    /// Events read but not yet asked for.
    seen: Vec<(String, Value)>,
    /// The partner's key, which task-api signs the partner's events with.
    key: SigningKey,
    _connection: Connection,
}

impl Partner {
    async fn new(system: &System, name: &str) -> Partner {
        let partner = PartnerName::parse(name).unwrap();
        let signer = Signer::Partner(system.master_key.partner(&partner));
        Self::with_broker(system, name, Broker::signed(system.amqp_url.clone(), name, signer)).await
    }

    /// A partner whose commands carry no signature.
    async fn unsigned(system: &System, name: &str) -> Partner {
        Self::with_broker(system, name, Broker::new(system.amqp_url.clone(), name)).await
    }

    async fn with_broker(system: &System, name: &str, broker: Broker) -> Partner {
        let connection = Connection::connect(&system.amqp_url, ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let queue = format!("billing.{name}.events-{}", random_suffix());
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        channel.queue_declare(queue.as_str().into(), options, FieldTable::default()).await.unwrap();
        let binding = format!("{name}.#");
        channel
            .queue_bind(
                queue.as_str().into(),
                PARTNER_EVENTS_EXCHANGE.into(),
                binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let events = channel
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let key = system.master_key.partner(&PartnerName::parse(name).unwrap());
        Partner { name: name.to_owned(), broker, events, seen: Vec::new(), key, _connection: connection }
    }

    async fn send(&self, key: &str, command: Value) {
        let body = json!({ "partner": self.name, "idempotency_key": key, "command": command });
        self.send_raw(&serde_json::to_vec(&body).unwrap()).await;
    }

    async fn send_raw(&self, body: &[u8]) {
        self.broker.publish_bytes(COMMANDS_EXCHANGE, COMMAND_KEY, body).await.expect("the broker takes the command");
    }

    /// Reads the next event into `seen`, checking it was signed with the partner's key.
    async fn read(&mut self, deadline: tokio::time::Instant, waiting_for: &str) {
        let delivery = match tokio::time::timeout_at(deadline, self.events.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(other) => panic!("the events consumer ended: {other:?}"),
            Err(_) => panic!("no {waiting_for} in time; seen: {:?}", self.seen),
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let body: Value = serde_json::from_slice(&delivery.data).expect("events are JSON");
        assert_eq!(self.key.verify_delivery(&delivery), Ok(()), "an event not signed with the partner's key: {body}");
        self.seen.push((delivery.routing_key.as_str().to_owned(), body));
    }

    /// The first event `<partner>.<event>` (e.g. `task.finished`) for which `matches`
    /// holds, waiting up to `patience`.
    async fn event(&mut self, event: &str, patience: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        let key = format!("{}.{event}", self.name);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(i) = self.seen.iter().position(|(k, v)| *k == key && matches(v)) {
                return self.seen.remove(i).1;
            }
            self.read(deadline, &key).await;
        }
    }

    /// The answer to the command sent under `idempotency_key`: `command.accepted` or
    /// `command.rejected`, and its body.
    async fn answer(&mut self, idempotency_key: &str) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            for event in ["command.accepted", "command.rejected"] {
                let key = format!("{}.{event}", self.name);
                let position = self.seen.iter().position(|(k, v)| *k == key && v["idempotency_key"] == idempotency_key);
                if let Some(i) = position {
                    return (event.to_owned(), self.seen.remove(i).1);
                }
            }
            self.read(deadline, &format!("answer to {idempotency_key}")).await;
        }
    }

    async fn accepted(&mut self, idempotency_key: &str) -> Value {
        let (event, body) = self.answer(idempotency_key).await;
        assert_eq!(event, "command.accepted", "{idempotency_key}: {body}");
        body
    }

    async fn rejected(&mut self, idempotency_key: &str) -> Value {
        let (event, body) = self.answer(idempotency_key).await;
        assert_eq!(event, "command.rejected", "{idempotency_key}: {body}");
        body
    }

    async fn finished(&mut self, task_id: &Value) -> Value {
        self.event("task.finished", INSTALL_PATIENCE, |e| e["task_id"] == *task_id).await
    }
}

async fn total(system: &System, path: &str) -> i64 {
    let (status, body) = system.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["total"].as_i64().unwrap_or_else(|| panic!("{path}: {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_ordered_over_amqp_is_installed_and_served_and_the_same_order_twice_makes_one_site() {
    let (system, _fpm) = start_with_php(Options::default()).await;
    system.server_ready().await;
    system.wordpress_platform("wp").await;
    let mut billing = Partner::new(&system, "billing").await;

    billing
        .send("customer-1", json!({ "action": "create_client", "client": "acme", "email": "ops@acme.example" }))
        .await;
    let client = billing.accepted("customer-1").await;
    assert_eq!(client["client"], "acme", "{client}");
    assert!(client.get("task_id").is_none(), "a client is made at once: {client}");

    let uri = format!("shop-{}.example.com", random_suffix());
    let title = format!("Shop {}", random_suffix());
    let order = json!({
        "action": "create_site", "site": uri, "client": "acme", "product": "platform_wp",
        "options": { "title": title }
    });
    billing.send("order-1", order.clone()).await;
    let accepted = billing.accepted("order-1").await;
    let task_id = accepted["task_id"].clone();
    assert!(task_id.is_string(), "{accepted}");
    assert_eq!((accepted["site"].as_str(), accepted["client"].as_str()), (Some(uri.as_str()), Some("acme")));

    let started = billing.event("task.started", INSTALL_PATIENCE, |e| e["task_id"] == task_id).await;
    assert_eq!((started["kind"].as_str(), started["site"].as_str()), (Some("install"), Some(uri.as_str())));
    let finished = billing.finished(&task_id).await;
    assert_eq!(finished["outcome"], "success", "{finished}");
    assert_eq!(finished["idempotency_key"], "order-1", "{finished}");
    assert_eq!(finished["site"].as_str(), Some(uri.as_str()), "{finished}");

    let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
    assert_eq!(status, 200, "the ordered site answers over HTTP: {body}");
    assert!(body.contains(&title), "the page shows the ordered title");

    // The same order again (a billing system unsure it was sent): the first answer, nothing new.
    billing.send("order-1", order).await;
    let again = billing.accepted("order-1").await;
    assert_eq!(again["repeated"], true, "{again}");
    assert_eq!(again["task_id"], task_id, "the answer refers to the first task: {again}");
    assert_eq!(total(&system, "/api/v1/sites?client=acme").await, 1, "one site");
    assert_eq!(total(&system, &format!("/api/v1/tasks?context=@{uri}")).await, 1, "one install task");

    // The same key for another command is refused, and nothing happens to the site.
    billing.send("order-1", json!({ "action": "disable", "site": uri })).await;
    let reused = billing.rejected("order-1").await;
    assert_eq!(reused["code"], "key_reused", "{reused}");
    assert!(reused["reason"].as_str().unwrap().contains("create_site"), "{reused}");
    assert_eq!(total(&system, &format!("/api/v1/tasks?context=@{uri}")).await, 1, "no new task");

    // Under its own key, the disable runs, and the partner hears how it ended.
    billing.send("order-1-suspend", json!({ "action": "disable", "site": uri })).await;
    let disable = billing.accepted("order-1-suspend").await;
    let finished = billing.finished(&disable["task_id"]).await;
    assert_eq!((finished["outcome"].as_str(), finished["kind"].as_str()), (Some("success"), Some("disable")));
    let (status, body) = fetch_showing(&uri, system.http_port, &title, false).await;
    assert!(status != 200 && !body.contains(&title), "a disabled site is not served: {status}");
    let (_, view) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(view["status"], "disabled", "{view}");

    // Paid again, backed up, then cancelled: each command's task reaches the partner.
    for (key, action) in [("order-1-resume", "enable"), ("order-1-backup", "backup"), ("order-1-cancel", "delete")] {
        billing.send(key, json!({ "action": action, "site": uri })).await;
        let accepted = billing.accepted(key).await;
        let finished = billing.finished(&accepted["task_id"]).await;
        assert_eq!(finished["outcome"], "success", "{action}: {finished}");
        if action == "enable" {
            let (status, body) = fetch_showing(&uri, system.http_port, &title, true).await;
            assert!(status == 200 && body.contains(&title), "enabled again: {status}");
        }
        if action == "backup" {
            let (_, backups) = system.get(&format!("/api/v1/sites/{uri}/backups")).await;
            assert_eq!(backups["total"], 1, "the backup's archive is listed: {backups}");
        }
    }
    let (status, _) = system.get(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(status, 404, "the cancelled site is gone");
    let (_, body) = fetch_showing(&uri, system.http_port, &title, false).await;
    assert!(!body.contains(&title), "the host no longer answers with the site");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_unsigned_and_foreign_commands_are_rejected_with_the_reason_and_change_nothing() {
    let system = System::start().await;
    let mut billing = Partner::new(&system, "billing").await;
    billing.send("customer-1", json!({ "action": "create_client", "client": "acme" })).await;
    billing.accepted("customer-1").await;

    // Not a command the schema allows: the reason names what is wrong.
    let bad_product =
        json!({ "action": "create_site", "site": "a.example.com", "client": "acme", "product": "wordpress" });
    billing.send("order-bad", bad_product).await;
    let malformed = billing.rejected("order-bad").await;
    assert_eq!(malformed["code"], "malformed", "{malformed}");
    assert!(malformed["reason"].as_str().unwrap().contains("platform name `wordpress` is not valid"), "{malformed}");
    billing
        .send_raw(br#"{"partner":"billing","idempotency_key":"order-junk","command":{"action":"create_world"}}"#)
        .await;
    let junk = billing.rejected("order-junk").await;
    assert_eq!(junk["code"], "malformed", "{junk}");
    assert!(junk["reason"].as_str().unwrap().contains("create_world"), "{junk}");

    // Unsigned, and signed with another partner's key: unauthorized.
    let mut unsigned = Partner::unsigned(&system, "billing").await;
    unsigned.send("customer-2", json!({ "action": "create_client", "client": "mallory" })).await;
    let refused = unsigned.rejected("customer-2").await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    assert!(refused["reason"].as_str().unwrap().starts_with("unauthorized"), "{refused}");
    let other = Partner::new(&system, "other").await;
    let forged = json!({ "partner": "billing", "idempotency_key": "customer-3",
        "command": { "action": "create_client", "client": "mallory" } });
    other.send_raw(&serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(billing.rejected("customer-3").await["code"], "unauthorized");

    // Another partner may not use billing's client.
    let mut other = other;
    let order = json!({ "action": "create_site", "site": "b.example.com", "client": "acme", "product": "platform_wp" });
    other.send("order-1", order).await;
    let forbidden = other.rejected("order-1").await;
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
    other.send("customer-1", json!({ "action": "create_client", "client": "acme", "title": "Taken" })).await;
    assert_eq!(other.rejected("customer-1").await["code"], "forbidden");

    // A command that names no partner cannot be answered: it is kept for operators.
    billing
        .send_raw(br#"{"idempotency_key":"anonymous-1","command":{"action":"backup","site":"a.example.com"}}"#)
        .await;
    let kept =
        wait_for(Duration::from_secs(60), || async { system.queue_depth("aegir.dead-letters").await >= 1 }).await;
    assert!(kept, "the anonymous command is in aegir.dead-letters");

    // Nothing was made but billing's one client, which keeps its title.
    assert_eq!(total(&system, "/api/v1/clients").await, 1);
    let (_, acme) = system.get("/api/v1/clients/acme").await;
    assert!(acme["title"].is_null(), "{acme}");
    assert_eq!(total(&system, "/api/v1/sites").await, 0);
    assert_eq!(total(&system, "/api/v1/tasks").await, 0);
}
