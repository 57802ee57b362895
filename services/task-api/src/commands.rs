//! The command interface for billing and other systems ("partners").
//!
//! Commands arrive on `api.commands`. Each is checked in this order, and a refusal is
//! answered with a `command_rejected` event to the partner, changing nothing:
//!
//! 1. its signature: it must be signed with the key of the partner it names
//!    (`aegir keys partner NAME`), else it is `unauthorized`;
//! 2. its schema (`schemas/command.json`), else it is `malformed`;
//! 3. its idempotency key: a key acted on before is answered with the first answer
//!    (marked `repeated`) and nothing is done again; the same key with another command is
//!    refused (`key_reused`);
//! 4. ownership: a partner acts only on the clients it created and their sites
//!    (`forbidden`);
//! 5. the API's own rules, by the API's own code: a site is saved with
//!    [`sites::save_in`](crate::routes::sites::save_in) and its tasks are queued with
//!    [`tasks::enqueue`](crate::routes::tasks::enqueue) (`refused`, with the API's message).
//!
//! What a command does, its remembered answer and its answer in the outbox are written in
//! one transaction, and the delivery is acked only after it committed: a crash at any
//! point either redelivers the command (which then finds its key) or has done it all.
//! The events of the tasks commands made are sent from the event consumer, also through
//! the outbox ([`task_started`], [`task_finished`]).
//!
//! A product is a platform: `create_site` names the platform the partner sells by its
//! name, and the site is saved on it as `PUT /api/v1/sites/{uri}` would save it.

use std::time::Duration;

use aegir_amqp::lapin_options::{BasicAckOptions, BasicNackOptions};
use aegir_amqp::signing::MasterKey;
use aegir_amqp::topology::QueueName;
use aegir_amqp::{ConsumerSpec, Delivery, consume};
use aegir_contract::{
    ClientName, Command, CommandAccepted, CommandAction, CommandRef, CommandRejected, ContextName, IdempotencyKey,
    Lane, Message, PartnerName, PartnerTaskFinished, PartnerTaskStarted, RejectCode, SiteOptions, SiteUri,
    TaskFinished, TaskKind, TaskOutcome, TaskStarted,
};
use aegir_postgres::Outbox;
use chrono::Utc;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::db;
use crate::error::ApiError;
use crate::routes::clients::ClientInput;
use crate::routes::sites::{SiteInput, save_in};
use crate::routes::tasks::enqueue;
use crate::state::AppState;
use crate::task_args::TaskArgs;

/// Commands handled at once.
const PREFETCH: u16 = 8;
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Consumes `api.commands` until `shutdown`.
pub async fn run(state: AppState, master: MasterKey, shutdown: CancellationToken) {
    let spec = ConsumerSpec { queue: QueueName::ApiCommands, prefetch: PREFETCH, in_order: false, batch_acks: false };
    let broker = state.broker.clone();
    consume(broker, spec, shutdown.clone(), move |delivery| {
        let (state, master, shutdown) = (state.clone(), master.clone(), shutdown.clone());
        async move { handle(&state, &master, &shutdown, delivery).await }
    })
    .await;
}

/// Why a command was not acted on.
#[derive(Debug)]
enum Refusal {
    Rejected(RejectCode, String),
    /// PostgreSQL is not there: try again later.
    Unavailable(String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unavailable(e) => Refusal::Unavailable(e.to_string()),
            // As the API does: the details go to the log, not to the partner.
            ApiError::Internal(details) => {
                tracing::error!(error = %details, "a command failed");
                Refusal::Rejected(RejectCode::Refused, "internal error; task-api's log has the details".into())
            }
            other => Refusal::Rejected(RejectCode::Refused, other.to_string()),
        }
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

async fn handle(state: &AppState, master: &MasterKey, shutdown: &CancellationToken, delivery: Delivery) {
    let Some(sender) = CommandRef::peek(&delivery.data) else {
        // Without a partner there is no one to answer: kept in aegir.dead-letters for
        // operators instead.
        tracing::warn!("dead-lettering a command that names no valid partner (`partner`); it cannot be answered");
        if let Err(e) = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await {
            tracing::warn!(error = %e, "could not dead-letter a command");
        }
        return;
    };
    let span = tracing::info_span!("command", partner = %sender.partner);
    async {
        let verdict = check(master, &sender, &delivery);
        let mut delay = RETRY_FIRST;
        loop {
            let outcome = match &verdict {
                Ok(command) => act(state, command).await,
                Err((code, reason)) => reject(state, &sender, *code, reason).await,
            };
            match outcome {
                Ok(()) => return ack(&delivery).await,
                Err(e) => {
                    // Not acked: at shutdown the broker gives it to the next run.
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot handle a command yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// The command, once its signature and its schema are checked.
fn check(master: &MasterKey, sender: &CommandRef, delivery: &Delivery) -> Result<Command, (RejectCode, String)> {
    master.partner(&sender.partner).verify_delivery(delivery).map_err(|e| {
        let advice = format!("sign commands with the key `aegir keys partner {}` prints", sender.partner);
        (RejectCode::Unauthorized, format!("unauthorized: {e}; {advice}"))
    })?;
    Command::decode(&delivery.data)
        .map_err(|e| (RejectCode::Malformed, format!("{e}; schemas/command.json describes commands")))
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // Its effect is stored; a redelivery finds the idempotency key.
        tracing::warn!(error = %e, "could not ack a command");
    }
}

/// Sends a refusal to the partner. Errs only when the database is unavailable.
async fn reject(state: &AppState, sender: &CommandRef, code: RejectCode, reason: &str) -> Result<(), String> {
    tracing::info!(code = ?code, reason, "command rejected");
    let message = CommandRejected {
        partner: sender.partner.clone(),
        idempotency_key: sender.idempotency_key.clone(),
        code,
        reason: reason.to_owned(),
        at: Utc::now(),
    };
    let sent = async {
        let mut tx = state.pool.begin().await?;
        Outbox::enqueue(&mut tx, &message, None).await.map_err(|aegir_postgres::OutboxError::Database(e)| e)?;
        tx.commit().await
    };
    sent.await.map_err(|e: sqlx::Error| e.to_string())?;
    state.outbox.wake();
    Ok(())
}

/// Acts on a command that passed its signature and schema. Errs only when the database
/// is unavailable; every other refusal is answered.
async fn act(state: &AppState, command: &Command) -> Result<(), String> {
    let sender =
        CommandRef { partner: command.partner.clone(), idempotency_key: Some(command.idempotency_key.to_string()) };
    match act_in_transaction(state, command).await {
        Ok(()) => Ok(()),
        Err(Refusal::Unavailable(e)) => Err(e),
        Err(Refusal::Rejected(code, reason)) => reject(state, &sender, code, &reason).await,
    }
}

async fn act_in_transaction(state: &AppState, command: &Command) -> Result<(), Refusal> {
    let (partner, key) = (&command.partner, &command.idempotency_key);
    let body = serde_json::to_value(&command.command).expect("commands serialize");
    let mut tx = state.pool.begin().await?;
    // Two deliveries of one key wait for each other, so only one of them acts.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("command {partner} {key}"))
        .execute(&mut *tx)
        .await?;
    let earlier: Option<(Value, Value)> =
        sqlx::query_as("SELECT command, reply FROM commands WHERE partner = $1 AND idempotency_key = $2")
            .bind(partner.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let reply = match earlier {
        Some((earlier_command, _)) if earlier_command != body => {
            return Err(Refusal::Rejected(
                RejectCode::KeyReused,
                format!(
                    "idempotency key `{key}` was used before for another command ({}); give each command its own key",
                    earlier_command.get("action").and_then(Value::as_str).unwrap_or("another action")
                ),
            ));
        }
        Some((_, reply)) => {
            let mut reply: CommandAccepted = serde_json::from_value(reply)
                .map_err(|e| Refusal::Rejected(RejectCode::Refused, format!("internal error: {e}")))?;
            reply.repeated = true;
            reply.at = Utc::now();
            tracing::info!(idempotency_key = %key, "command sent again; answering with the first answer");
            reply
        }
        None => {
            let reply = perform(&mut tx, partner, key, &command.command).await?;
            sqlx::query(
                "INSERT INTO commands (partner, idempotency_key, command, reply, task_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(partner.as_str())
            .bind(key.as_str())
            .bind(&body)
            .bind(serde_json::to_value(&reply).expect("replies serialize"))
            .bind(reply.task_id)
            .execute(&mut *tx)
            .await?;
            tracing::info!(idempotency_key = %key, action = command.command.name(), task_id = ?reply.task_id, "command accepted");
            reply
        }
    };
    Outbox::enqueue(&mut tx, &reply, None).await.map_err(|aegir_postgres::OutboxError::Database(e)| e)?;
    tx.commit().await?;
    state.outbox.wake();
    Ok(())
}

/// The partner that created `client`, if a partner did.
async fn owner_of(conn: &mut PgConnection, client: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT partner FROM partner_clients WHERE client = $1").bind(client).fetch_optional(conn).await
}

fn forbidden_client(partner: &PartnerName, client: &str) -> Refusal {
    Refusal::Rejected(
        RejectCode::Forbidden,
        format!("client `{client}` was not created by partner `{partner}`; a partner acts only on its own clients"),
    )
}

/// Does what the command asks, in `tx`.
async fn perform(
    tx: &mut PgConnection,
    partner: &PartnerName,
    key: &IdempotencyKey,
    action: &CommandAction,
) -> Result<CommandAccepted, Refusal> {
    let mut reply = CommandAccepted {
        partner: partner.clone(),
        idempotency_key: key.clone(),
        action: action.name().to_owned(),
        task_id: None,
        client: None,
        site: action.site().cloned(),
        repeated: false,
        at: Utc::now(),
    };
    match action {
        CommandAction::CreateClient { client, title, email } => {
            let exists = db::clients::get(&mut *tx, client).await?.is_some();
            let owner = owner_of(tx, client.as_str()).await?;
            if exists && owner.as_deref() != Some(partner.as_str()) {
                return Err(forbidden_client(partner, client.as_str()));
            }
            let mut body = Map::new();
            body.insert("title".into(), json!(title));
            body.insert("email".into(), json!(email));
            let input = ClientInput::parse(body)?;
            db::clients::save(&mut *tx, client, input.title.as_deref(), input.email.as_deref()).await?;
            sqlx::query(
                "INSERT INTO partner_clients (client, partner) VALUES ($1, $2) ON CONFLICT (client) DO NOTHING",
            )
            .bind(client.as_str())
            .bind(partner.as_str())
            .execute(&mut *tx)
            .await?;
            // Another partner may have made the same client at the same moment: the first keeps it.
            if owner_of(tx, client.as_str()).await?.as_deref() != Some(partner.as_str()) {
                return Err(forbidden_client(partner, client.as_str()));
            }
            reply.client = Some(client.clone());
        }
        CommandAction::CreateSite { site, client, product, options } => {
            if db::clients::get(&mut *tx, client).await?.is_none() {
                return Err(Refusal::Rejected(
                    RejectCode::Refused,
                    format!("client `{client}` does not exist; send `create_client` for it first"),
                ));
            }
            if owner_of(tx, client.as_str()).await?.as_deref() != Some(partner.as_str()) {
                return Err(forbidden_client(partner, client.as_str()));
            }
            if db::sites::get(&mut *tx, site).await?.is_some() {
                return Err(Refusal::Rejected(
                    RejectCode::Refused,
                    format!("site `{site}` exists already; choose another uri"),
                ));
            }
            let input = SiteInput::parse(site_body(product, client, options), site)?;
            save_in(tx, site, &input).await?;
            let task = enqueue(
                tx,
                &ContextName::Site(site.clone()),
                (TaskKind::Install, Lane::Interactive),
                &TaskArgs::default(),
            )
            .await?;
            reply.client = Some(client.clone());
            reply.task_id = Some(task.id);
        }
        CommandAction::Disable { site }
        | CommandAction::Enable { site }
        | CommandAction::Delete { site }
        | CommandAction::Backup { site } => {
            let row = db::sites::get(&mut *tx, site)
                .await?
                .ok_or_else(|| Refusal::Rejected(RejectCode::Refused, format!("site `{site}` does not exist")))?;
            let owned = match &row.client {
                Some(client) => owner_of(tx, client).await?.as_deref() == Some(partner.as_str()),
                None => false,
            };
            if !owned {
                return Err(Refusal::Rejected(
                    RejectCode::Forbidden,
                    format!(
                        "site `{site}` does not belong to a client of partner `{partner}`; a partner acts only on its own clients' sites"
                    ),
                ));
            }
            let kind = action.task().expect("site commands make tasks");
            let task =
                enqueue(tx, &ContextName::Site(site.clone()), (kind, Lane::Interactive), &TaskArgs::default()).await?;
            reply.client = row.client.and_then(|c| ClientName::parse(&c).ok());
            reply.task_id = Some(task.id);
        }
    }
    Ok(reply)
}

/// A `create_site` as the body `PUT /api/v1/sites/{uri}` takes, so the API's parser
/// checks it.
fn site_body(product: &aegir_contract::PlatformName, client: &ClientName, options: &SiteOptions) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("platform".into(), json!(format!("@{product}")));
    body.insert("client".into(), json!(client));
    body.insert("profile".into(), json!(options.profile));
    body.insert("language".into(), json!(options.language));
    body.insert("title".into(), json!(options.title));
    body.insert("admin_email".into(), json!(options.admin_email));
    if !options.aliases.is_empty() {
        body.insert("aliases".into(), json!(options.aliases));
    }
    body
}

/// The partner command that made a task, as stored; all `None` when no command did. Read
/// in the statement that records the task's start or end (see `db::tasks`), so the
/// partner hears of it without a look-up of its own.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct CommandOfTask {
    pub partner: Option<String>,
    pub idempotency_key: Option<String>,
    pub command: Option<Value>,
}

impl CommandOfTask {
    /// The partner, the command's key and its site, when a command made task `task_id`.
    fn read(self, task_id: Uuid) -> Option<(PartnerName, IdempotencyKey, Option<SiteUri>)> {
        let (Some(partner), Some(key), Some(command)) = (self.partner, self.idempotency_key, self.command) else {
            return None;
        };
        let (Ok(partner), Ok(key)) = (PartnerName::parse(&partner), IdempotencyKey::parse(&key)) else {
            tracing::warn!(%task_id, "a stored command has a partner or key this version cannot read");
            return None;
        };
        let site = command.get("site").and_then(Value::as_str).and_then(|s| SiteUri::parse(s).ok());
        Some((partner, key, site))
    }
}

/// Tells the partner whose command made the task that it started, in the transaction
/// that records the start. False when no command made it.
pub async fn task_started(
    conn: &mut PgConnection,
    started: &TaskStarted,
    command: CommandOfTask,
) -> sqlx::Result<bool> {
    let Some((partner, idempotency_key, site)) = command.read(started.task_id) else { return Ok(false) };
    let event = PartnerTaskStarted {
        partner,
        idempotency_key,
        task_id: started.task_id,
        kind: started.kind,
        site,
        at: started.at,
    };
    Outbox::enqueue(conn, &event, None).await.map_err(|aegir_postgres::OutboxError::Database(e)| e)?;
    Ok(true)
}

/// Tells the partner whose command made the task how it ended, in the transaction that
/// records the end (which happens once per task). False when no command made it.
pub async fn task_finished(
    conn: &mut PgConnection,
    finished: &TaskFinished,
    kind: TaskKind,
    command: CommandOfTask,
) -> sqlx::Result<bool> {
    let Some((partner, idempotency_key, site)) = command.read(finished.task_id) else { return Ok(false) };
    let event = PartnerTaskFinished {
        partner,
        idempotency_key,
        task_id: finished.task_id,
        kind,
        site,
        outcome: finished.outcome,
        reason: match finished.outcome {
            TaskOutcome::Success => None,
            _ => {
                Some(finished.reason.clone().unwrap_or_else(|| format!("the task ended {}", finished.outcome.as_str())))
            }
        },
        at: finished.at,
    };
    debug_assert!(PartnerTaskFinished::decode(&event.encode()).is_ok());
    Outbox::enqueue(conn, &event, None).await.map_err(|aegir_postgres::OutboxError::Database(e)| e)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_site_becomes_the_body_the_api_parses() {
        let command = Command::decode(
            br#"{"partner":"billing","idempotency_key":"k1","command":{"action":"create_site","site":"shop.example.com","client":"acme","product":"platform_wp","options":{"title":"Shop","aliases":["www.shop.example.com"]}}}"#,
        )
        .unwrap();
        let CommandAction::CreateSite { site, client, product, options } = &command.command else { panic!() };
        let input = SiteInput::parse(site_body(product, client, options), site).unwrap();
        assert_eq!(input.platform.as_str(), "platform_wp");
        assert_eq!(input.client.as_ref().map(ClientName::as_str), Some("acme"));
        assert_eq!(input.title.as_str(), "Shop");
        assert_eq!(input.language.as_str(), "en");
        assert_eq!(input.aliases.len(), 1);

        // The API's own rules apply: an alias that is the site's uri is refused.
        let same = SiteOptions { aliases: vec![site.clone()], ..Default::default() };
        let err = SiteInput::parse(site_body(product, client, &same), site).unwrap_err();
        assert!(err.to_string().contains("own uri"), "{err}");
    }

    #[test]
    fn api_refusals_are_answered_and_an_unavailable_database_is_retried() {
        let refused: Refusal = ApiError::conflict(None, "task x of `@a.example` has not finished").into();
        assert!(matches!(refused, Refusal::Rejected(RejectCode::Refused, ref r) if r.contains("has not finished")));
        let retried: Refusal = ApiError::Unavailable(sqlx::Error::PoolTimedOut).into();
        assert!(matches!(retried, Refusal::Unavailable(_)));
    }
}
