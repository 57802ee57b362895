//! The command interface for billing and other systems ("partners").
//!
//! A partner publishes a [`Command`] to the commands exchange, signed with its own key;
//! task-api answers on the partner events exchange, under routing keys that begin with
//! the partner's name:
//!
//! - [`CommandAccepted`] (`<partner>.command.accepted`): the command was acted on; a
//!   command that made a task names it;
//! - [`CommandRejected`] (`<partner>.command.rejected`): nothing was changed, and why;
//! - [`PartnerTaskStarted`] / [`PartnerTaskFinished`] (`<partner>.task.started`,
//!   `<partner>.task.finished`): the life of a task a command made.
//!
//! Every command carries an idempotency key chosen by the partner: the same key again
//! is answered with the first outcome and changes nothing, so a partner may resend a
//! command whenever it is unsure it arrived.
//!
//! A product is a platform: `create_site` names the platform (`platform_wp`) the partner
//! sells, and the site is created there like `PUT /api/v1/sites/{uri}` would.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::messages::{Message, TaskKind, TaskOutcome};
use crate::names::{
    ClientName, Email, IdempotencyKey, LanguageCode, PartnerName, PlatformName, ProfileName, SiteTitle, SiteUri,
};

/// What a partner may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandAction {
    /// Create a client (or update the title and e-mail of one the partner created).
    CreateClient {
        client: ClientName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    /// Create a site for one of the partner's clients on a product's platform and
    /// install it.
    CreateSite {
        site: SiteUri,
        /// A client the partner created.
        client: ClientName,
        /// The product: the platform the site runs on.
        product: PlatformName,
        #[serde(default, skip_serializing_if = "SiteOptions::is_empty")]
        options: SiteOptions,
    },
    /// Serve the "site disabled" page instead of the site.
    Disable { site: SiteUri },
    /// Serve a disabled site again.
    Enable { site: SiteUri },
    /// Delete the site from its servers (after a final backup).
    Delete { site: SiteUri },
    /// Take a backup of the site.
    Backup { site: SiteUri },
}

impl CommandAction {
    /// The action's name as commands spell it.
    pub fn name(&self) -> &'static str {
        match self {
            CommandAction::CreateClient { .. } => "create_client",
            CommandAction::CreateSite { .. } => "create_site",
            CommandAction::Disable { .. } => "disable",
            CommandAction::Enable { .. } => "enable",
            CommandAction::Delete { .. } => "delete",
            CommandAction::Backup { .. } => "backup",
        }
    }

    /// The site the command is about, if any.
    pub fn site(&self) -> Option<&SiteUri> {
        match self {
            CommandAction::CreateClient { .. } => None,
            CommandAction::CreateSite { site, .. }
            | CommandAction::Disable { site }
            | CommandAction::Enable { site }
            | CommandAction::Delete { site }
            | CommandAction::Backup { site } => Some(site),
        }
    }

    /// The task the command makes, if it makes one.
    pub fn task(&self) -> Option<TaskKind> {
        match self {
            CommandAction::CreateClient { .. } => None,
            CommandAction::CreateSite { .. } => Some(TaskKind::Install),
            CommandAction::Disable { .. } => Some(TaskKind::Disable),
            CommandAction::Enable { .. } => Some(TaskKind::Enable),
            CommandAction::Delete { .. } => Some(TaskKind::Delete),
            CommandAction::Backup { .. } => Some(TaskKind::Backup),
        }
    }
}

/// What a new site may set beyond its platform and client; the rest takes the API's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteOptions {
    /// An install profile the platform offers (Drupal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileName>,
    /// Defaults to `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguageCode>,
    /// Defaults to the uri.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<SiteTitle>,
    /// Defaults to the client's e-mail address, else `webmaster@<uri>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<Email>,
    /// Other names the site answers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<SiteUri>,
}

impl SiteOptions {
    pub fn is_empty(&self) -> bool {
        self == &SiteOptions::default()
    }
}

/// partner → task-api: do this. Signed with the partner's key (`aegir keys partner NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Who sends it; its key must have signed it.
    pub partner: PartnerName,
    /// The same key again is answered with the first outcome and changes nothing.
    pub idempotency_key: IdempotencyKey,
    pub command: CommandAction,
}

impl Message for Command {
    const NAME: &'static str = "command";
}

/// The partner and key of a command, read from a body that may not be a valid command,
/// so that a refusal reaches the partner that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRef {
    pub partner: PartnerName,
    /// As sent, even when it is not a valid key.
    pub idempotency_key: Option<String>,
}

impl CommandRef {
    pub fn peek(body: &[u8]) -> Option<CommandRef> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let partner = PartnerName::parse(value.get("partner")?.as_str()?).ok()?;
        let idempotency_key =
            value.get("idempotency_key").and_then(|k| k.as_str()).map(|k| k.chars().take(128).collect());
        Some(CommandRef { partner, idempotency_key })
    }
}

/// task-api → partner: the command was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAccepted {
    pub partner: PartnerName,
    pub idempotency_key: IdempotencyKey,
    /// The command's action, e.g. `create_site`.
    pub action: String,
    /// The task the command made; its `task.started` and `task.finished` follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteUri>,
    /// True when this answers a command sent again: nothing new was done, and the
    /// fields are those of the first answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    pub at: DateTime<Utc>,
}

impl Message for CommandAccepted {
    const NAME: &'static str = "command_accepted";
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The message is not a command the schema allows.
    Malformed,
    /// It is not signed with the key of the partner it names.
    Unauthorized,
    /// It is about a client or site the partner did not create.
    Forbidden,
    /// The idempotency key was used before for another command.
    KeyReused,
    /// The system's state or rules refuse it (a missing product, a site that exists,
    /// a task already running); the reason says which.
    Refused,
}

/// task-api → partner: the command was refused and changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    pub partner: PartnerName,
    /// As the command carried it, when it carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub code: RejectCode,
    /// What was wrong and what to do.
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl Message for CommandRejected {
    const NAME: &'static str = "command_rejected";
}

/// task-api → partner: a task a command made has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerTaskStarted {
    pub partner: PartnerName,
    pub idempotency_key: IdempotencyKey,
    pub task_id: Uuid,
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteUri>,
    pub at: DateTime<Utc>,
}

impl Message for PartnerTaskStarted {
    const NAME: &'static str = "partner_task_started";
}

/// task-api → partner: a task a command made has ended. Sent once per task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerTaskFinished {
    pub partner: PartnerName,
    pub idempotency_key: IdempotencyKey,
    pub task_id: Uuid,
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteUri>,
    pub outcome: TaskOutcome,
    /// Why it failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl Message for PartnerTaskFinished {
    const NAME: &'static str = "partner_task_finished";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_site() -> &'static str {
        r#"{"partner":"billing","idempotency_key":"order-42","command":{"action":"create_site","site":"shop.example.com","client":"acme","product":"platform_wp","options":{"title":"Shop"}}}"#
    }

    #[test]
    fn commands_parse_strictly() {
        let command = Command::decode(create_site().as_bytes()).unwrap();
        assert_eq!(command.command.name(), "create_site");
        assert_eq!(command.command.task(), Some(TaskKind::Install));
        assert_eq!(command.command.site().map(SiteUri::as_str), Some("shop.example.com"));
        assert_eq!(Command::decode(&command.encode()).unwrap(), command);

        for (broken, says) in [
            (create_site().replace("platform_wp", "wordpress"), "platform name"),
            (create_site().replace("shop.example.com", "shop.example.com/x"), "site uri"),
            (create_site().replace("order-42", "order 42"), "idempotency key"),
            (create_site().replace("\"billing\"", "\"Billing\""), "partner name"),
            (create_site().replace("create_site", "create_world"), "create_world"),
            (create_site().replace("\"title\"", "\"tittle\""), "tittle"),
            (create_site().replace(",\"client\":\"acme\"", ""), "client"),
        ] {
            let err = Command::decode(broken.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{broken}: {err}");
        }
    }

    #[test]
    fn a_refusal_finds_its_partner_in_a_broken_body() {
        let r = CommandRef::peek(br#"{"partner":"billing","idempotency_key":"k 1","command":7}"#).unwrap();
        assert_eq!((r.partner.as_str(), r.idempotency_key.as_deref()), ("billing", Some("k 1")));
        assert!(CommandRef::peek(br#"{"partner":"Not.A.Name"}"#).is_none());
        assert!(CommandRef::peek(b"not json").is_none());
    }
}
