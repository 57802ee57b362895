//! What a dead letter may keep. Dead letters stay in `aegir.dead-letters` for
//! operators, so a message that carries a private key (a certificate its owner supplied,
//! on its way to the web server) is kept there only with the key removed; and one that
//! carries a key is failed by its consumer before the broker would dead-letter it whole
//! for reaching its delivery limit.

use std::borrow::Cow;

use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use crate::topology::DELIVERY_LIMIT;

/// Every PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, encrypted
/// or not) has this in its armour lines.
const MARK: &str = "PRIVATE KEY";

/// What a dead letter holds where a message held a private key.
pub const REMOVED: &str = "[private key removed: never kept in the dead letters]";

/// Whether a message body holds a private key.
pub fn carries_private_key(body: &[u8]) -> bool {
    body.windows(MARK.len()).any(|w| w == MARK.as_bytes())
}

/// The copy of `body` to keep in the dead letters: the same JSON with every string that
/// holds a private key replaced by [`REMOVED`] (so its task, step and attempt still
/// read); a body that is not JSON and holds a key is not kept at all. A body without a
/// key is kept as it is.
pub fn without_private_keys(body: &[u8]) -> Cow<'_, [u8]> {
    if !carries_private_key(body) {
        return Cow::Borrowed(body);
    }
    let kept = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            scrub(&mut value);
            value
        }
        Err(_) => serde_json::json!({ "removed": "the message was not JSON and held a private key; it is not kept" }),
    };
    Cow::Owned(serde_json::to_vec(&kept).unwrap_or_default())
}

fn scrub(value: &mut Value) {
    match value {
        Value::String(text) if text.contains(MARK) => *text = REMOVED.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(fields) => fields.values_mut().for_each(scrub),
        _ => {}
    }
}

/// How many times a quorum queue handed this message out before, unsuccessfully
/// (`x-delivery-count`; absent on the first delivery).
pub fn delivery_count(headers: Option<&FieldTable>) -> i64 {
    match headers.and_then(|h| h.inner().get("x-delivery-count")) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(*n),
        _ => 0,
    }
}

/// Whether this delivery may be the last the queue allows: should it fail like the
/// ones before, the broker dead-letters the message as it is. One delivery early, to be
/// on the safe side of how the broker counts.
pub fn is_last_chance(headers: Option<&FieldTable>) -> bool {
    delivery_count(headers) >= DELIVERY_LIMIT - 1
}

#[cfg(test)]
mod tests {
    use aegir_contract::TaskRef;

    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSecretLine\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_step_carrying_a_supplied_key_is_kept_without_it_but_with_its_task() {
        let task_id = "0190f1f0-1234-7000-8000-000000000001";
        let step = serde_json::json!({
            "task_id": task_id,
            "step": 2,
            "attempt": 1,
            "action": {"site_certificate": {"renew": false, "supplied": {
                "chain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "key": KEY,
            }}},
        });
        let body = serde_json::to_vec(&step).unwrap();
        assert!(carries_private_key(&body));

        let kept = without_private_keys(&body);
        let text = String::from_utf8(kept.to_vec()).unwrap();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("SecretLine"), "{text}");
        let value: Value = serde_json::from_slice(&kept).unwrap();
        let supplied = &value["action"]["site_certificate"]["supplied"];
        assert_eq!(supplied["key"], REMOVED);
        assert_eq!(supplied["chain"], step["action"]["site_certificate"]["supplied"]["chain"], "the rest stays");
        // The scheduler still finds the task and step the dead letter belongs to.
        let task = TaskRef::peek(&kept).expect("the copy names its task");
        assert_eq!((task.task_id.to_string().as_str(), task.step, task.attempt), (task_id, Some(2), Some(1)));
    }

    #[test]
    fn a_message_without_a_key_is_kept_as_it_is_and_one_that_is_not_json_is_not_kept() {
        let body = br#"{"task_id":"0190f1f0-0000-7000-8000-000000000000","password":"hunter2"}"#;
        assert!(matches!(without_private_keys(body), Cow::Borrowed(b) if b == body));

        let garbage = format!("not json {KEY}");
        let kept = without_private_keys(garbage.as_bytes());
        assert!(!String::from_utf8_lossy(&kept).contains("PRIVATE KEY"));
        assert!(!String::from_utf8_lossy(&kept).contains("SecretLine"));
    }

    #[test]
    fn the_last_delivery_before_the_limit_is_known() {
        let headers = |n: i64| {
            let mut h = FieldTable::default();
            h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(n));
            h
        };
        assert_eq!(delivery_count(None), 0);
        assert!(!is_last_chance(None));
        assert!(!is_last_chance(Some(&headers(DELIVERY_LIMIT - 2))));
        assert!(is_last_chance(Some(&headers(DELIVERY_LIMIT - 1))));
        assert!(is_last_chance(Some(&headers(DELIVERY_LIMIT))));
    }
}
