//! Forms carry a token derived from the session, so a page of another site cannot make a
//! signed-in browser post to ours (the session cookie is also `SameSite=Strict`).

use sha2::{Digest, Sha256};

/// The token every form of a session carries in its `csrf` field.
pub fn token(session: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"aegir web form\0");
    hash.update(session.as_bytes());
    hex::encode(hash.finalize())
}

/// Whether `given` is the token of `session`, compared in constant time.
pub fn matches(session: &str, given: &str) -> bool {
    let expected = token(session);
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session() {
        let t = token("session-a");
        assert!(matches("session-a", &t));
        assert!(!matches("session-b", &t));
        assert!(!matches("session-a", ""));
        assert!(!matches("session-a", &t[..10]));
    }
}
