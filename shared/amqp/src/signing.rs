//! Signed messages, so that a party able to publish to the broker cannot make any part
//! of the system act.
//!
//! Every message carries an HMAC-SHA256 of its exchange, routing key and body in the
//! `x-aegir-signature` header. Keys are derived from one master key that only the
//! control plane (task-api, scheduler) holds:
//!
//! - the control key signs task requests and cancels (checked by the scheduler) and the
//!   control plane's own events;
//! - each server's key, `HMAC(master, "server " + name)`, signs the steps for that
//!   server (checked by its workers) and what its workers publish (their step results
//!   are checked by the scheduler).
//!
//! - each partner's key (a billing or other system), `HMAC(master, "partner " + name)`,
//!   signs its commands (checked by task-api) and what task-api tells it (which the
//!   partner may check).
//!
//! A worker holds only its own server's key: it can neither forge work for another
//! server nor pass off results as another server's. A partner holds only its own key.

use std::fmt;

use aegir_contract::{PartnerName, ServerName};
use hmac::{KeyInit, Mac};
use lapin::types::{AMQPValue, FieldTable};
use sha2::Sha256;

use crate::topology::{PARTNER_EVENTS_EXCHANGE, PartnerEventKey, QueueName, WORK_EXCHANGE};

/// The header a message's signature travels in.
pub const SIGNATURE_HEADER: &str = "x-aegir-signature";

type Hmac = hmac::Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a signing key is 64 hexadecimal characters (32 bytes); make one with `aegir keys new`")]
    Malformed,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the message carries no signature (`{SIGNATURE_HEADER}` header); only signed messages are acted on")]
    Missing,
    #[error("the message's signature is not 64 hexadecimal characters")]
    Malformed,
    #[error(
        "the message's signature does not match: it was not signed with the key this consumer trusts, or it was changed on the way"
    )]
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadKeyError {
    #[error("no {what}: set {env}_FILE to a file holding it (or {env} to the key itself)")]
    Missing { what: &'static str, env: &'static str },
    #[error("cannot read the {what} from {path}: {source}")]
    Unreadable { what: &'static str, path: String, source: std::io::Error },
    #[error("the {what} in {origin} is not usable: {source}")]
    Malformed { what: &'static str, origin: String, source: KeyError },
}

/// Reads a key given as a file or as the value itself. `what` names it and `env` is its
/// environment variable, for the error.
pub fn load_key(
    what: &'static str,
    env: &'static str,
    value: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<SigningKey, LoadKeyError> {
    let (text, origin) = match (value, file) {
        (Some(value), _) => (value.to_owned(), env.to_owned()),
        (None, Some(path)) => {
            let unreadable = |source| LoadKeyError::Unreadable { what, path: path.display().to_string(), source };
            (std::fs::read_to_string(path).map_err(unreadable)?, path.display().to_string())
        }
        (None, None) => return Err(LoadKeyError::Missing { what, env }),
    };
    SigningKey::parse(&text).map_err(|source| LoadKeyError::Malformed { what, origin, source })
}

/// 32 bytes of secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// 64 hexadecimal characters; surrounding whitespace (a key file's newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::Malformed)?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac {
        let mut mac = <Hmac as KeyInit>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            // Length-prefixed, so no two different messages sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn derive(&self, purpose: &str) -> SigningKey {
        SigningKey(self.mac(&[b"aegir key", purpose.as_bytes()]).finalize().into_bytes().into())
    }

    /// The signature of a message published to `exchange` with `key`.
    pub fn sign(&self, exchange: &str, key: &str, body: &[u8]) -> String {
        hex::encode(self.mac(&[exchange.as_bytes(), key.as_bytes(), body]).finalize().into_bytes())
    }

    /// Checks `signature` (the header's value) in constant time.
    pub fn verify(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(), SignatureError> {
        let signature = signature.ok_or(SignatureError::Missing)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(signature, &mut expected).map_err(|_| SignatureError::Malformed)?;
        self.mac(&[exchange.as_bytes(), key.as_bytes(), body])
            .verify_slice(&expected)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Checks a delivery's signature against its exchange, routing key and body.
    pub fn verify_delivery(&self, delivery: &lapin::message::Delivery) -> Result<(), SignatureError> {
        let signature = signature_of(delivery.properties.headers().as_ref());
        self.verify(delivery.exchange.as_str(), delivery.routing_key.as_str(), &delivery.data, signature.as_deref())
    }
}

fn signature_of(headers: Option<&FieldTable>) -> Option<String> {
    match headers?.inner().get(SIGNATURE_HEADER)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The deployment's master key, held by the control plane only.
#[derive(Clone, Debug)]
pub struct MasterKey(SigningKey);

impl MasterKey {
    pub fn new(key: SigningKey) -> Self {
        Self(key)
    }

    /// The master key as its key file holds it.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }

    /// Signs task requests and the control plane's own messages.
    pub fn control(&self) -> SigningKey {
        self.0.derive("control")
    }

    /// Signs the work of one server and what its workers publish.
    pub fn server(&self, server: &ServerName) -> SigningKey {
        self.0.derive(&format!("server {server}"))
    }

    /// Signs one partner's commands and what task-api tells that partner.
    pub fn partner(&self, partner: &PartnerName) -> SigningKey {
        self.0.derive(&format!("partner {partner}"))
    }
}

/// What a process signs the messages it publishes with.
#[derive(Clone, Debug)]
pub enum Signer {
    /// task-api and the scheduler: work for a server with that server's key, everything
    /// else with the control key.
    Control(MasterKey),
    /// One server's workers: everything with the server's key.
    Server(SigningKey),
    /// A partner: its commands with its own key.
    Partner(SigningKey),
}

impl Signer {
    pub fn sign(&self, exchange: &str, key: &str, body: &[u8]) -> String {
        match self {
            Signer::Control(master) => {
                let work = (exchange == WORK_EXCHANGE).then(|| QueueName::from_work_key(key)).flatten();
                let partner = (exchange == PARTNER_EVENTS_EXCHANGE).then(|| PartnerEventKey::partner_of(key)).flatten();
                match (work.as_ref().and_then(QueueName::route), partner) {
                    (Some(route), _) => master.server(&route.server).sign(exchange, key, body),
                    (None, Some(partner)) => master.partner(&partner).sign(exchange, key, body),
                    (None, None) => master.control().sign(exchange, key, body),
                }
            }
            Signer::Server(key_of) | Signer::Partner(key_of) => key_of.sign(exchange, key, body),
        }
    }

    /// Adds the signature header to `headers`.
    pub(crate) fn sign_into(&self, headers: &mut FieldTable, exchange: &str, key: &str, body: &[u8]) {
        let signature = self.sign(exchange, key, body);
        headers.insert(SIGNATURE_HEADER.into(), AMQPValue::LongString(signature.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::new(SigningKey::from_bytes([7; 32]))
    }

    #[test]
    fn keys_are_64_hex_characters() {
        let key = SigningKey::from_bytes([0xab; 32]);
        assert_eq!(SigningKey::parse(&format!("{}\n", key.to_hex())), Ok(key));
        assert_eq!(SigningKey::parse("abcd"), Err(KeyError::Malformed));
        assert_eq!(SigningKey::parse(&"zz".repeat(32)), Err(KeyError::Malformed));
        assert_eq!(format!("{:?}", SigningKey::from_bytes([1; 32])), "SigningKey(***)");
    }

    #[test]
    fn a_signature_covers_exchange_routing_key_and_body() {
        let key = master().control();
        let signature = key.sign("aegir.tasks", "task.requested", b"{}");
        assert_eq!(key.verify("aegir.tasks", "task.requested", b"{}", Some(&signature)), Ok(()));
        for (exchange, routing, body) in [
            ("aegir.work", "task.requested", &b"{}"[..]),
            ("aegir.tasks", "task.cancel", b"{}"),
            ("aegir.tasks", "task.requested", b"{ }"),
        ] {
            assert_eq!(key.verify(exchange, routing, body, Some(&signature)), Err(SignatureError::Mismatch));
        }
        assert_eq!(key.verify("aegir.tasks", "task.requested", b"{}", None), Err(SignatureError::Missing));
        assert_eq!(key.verify("aegir.tasks", "task.requested", b"{}", Some("xyz")), Err(SignatureError::Malformed));
    }

    #[test]
    fn work_is_signed_with_the_key_of_its_server_and_no_other() {
        let master = master();
        let web1 = ServerName::parse("server_web1").unwrap();
        let web2 = ServerName::parse("server_web2").unwrap();
        let control = Signer::Control(master.clone());
        for key in ["server_web2.http", "server_web2.http.bulk"] {
            let signature = control.sign(WORK_EXCHANGE, key, b"step");
            assert_eq!(master.server(&web2).verify(WORK_EXCHANGE, key, b"step", Some(&signature)), Ok(()));
            let other = master.server(&web1).verify(WORK_EXCHANGE, key, b"step", Some(&signature));
            assert_eq!(other, Err(SignatureError::Mismatch));
        }
        // A worker's own key signs what it publishes, and cannot pass for the control plane.
        let worker = Signer::Server(master.server(&web1));
        let result = worker.sign("aegir.events", "step.result", b"r");
        assert_eq!(master.server(&web1).verify("aegir.events", "step.result", b"r", Some(&result)), Ok(()));
        let forged = worker.sign("aegir.tasks", "task.requested", b"t");
        assert_eq!(
            master.control().verify("aegir.tasks", "task.requested", b"t", Some(&forged)),
            Err(SignatureError::Mismatch)
        );
        assert_ne!(master.server(&web1), master.server(&web2));
        assert_ne!(master.server(&web1), master.control());
    }

    #[test]
    fn a_partner_has_its_own_key_and_its_events_are_signed_with_it() {
        let master = master();
        let billing = PartnerName::parse("billing").unwrap();
        let other = PartnerName::parse("other").unwrap();
        assert_ne!(master.partner(&billing), master.partner(&other));
        assert_ne!(
            master.partner(&billing).to_hex(),
            master.server(&ServerName::parse("server_billing").unwrap()).to_hex()
        );
        let control = Signer::Control(master.clone());
        let key = "billing.task.finished";
        let signature = control.sign(PARTNER_EVENTS_EXCHANGE, key, b"e");
        assert_eq!(master.partner(&billing).verify(PARTNER_EVENTS_EXCHANGE, key, b"e", Some(&signature)), Ok(()));
        assert!(master.partner(&other).verify(PARTNER_EVENTS_EXCHANGE, key, b"e", Some(&signature)).is_err());
    }
}
