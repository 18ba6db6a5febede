//! Connection tokens every node can verify, so a client may negotiate on one node and open its
//! transport on any other (no sticky routing).
//!
//! With `--cluster-secret`, negotiate keeps nothing: the token it hands out carries what the
//! connection needs — its id, hub, expiry, whether stateful reconnect was granted, and what a
//! connect hook admitted — signed with HMAC-SHA256 under the shared secret. The node that
//! receives the first transport request checks the signature and the expiry, then claims the
//! connection in the cluster's [directory](backplane::directory) (first claim wins), so a
//! token opens at most one connection however many nodes see it.
//!
//! ```text
//! {node}.{payload: base64url JSON}.{tag: base64url HMAC-SHA256(secret, "hubgate-token-1." node "." payload)}
//! ```
//!
//! The leading node part names the node that negotiated, so a balancer that routes by it (an
//! optional optimisation, see docs/operations.md) still can. Tokens live as long as a
//! negotiated connection waits for its transport (`--disconnect-timeout`), and nodes accept
//! [`CLOCK_SKEW`] of disagreement between their clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::upstream::admission::Admission;

/// How far apart the nodes' clocks may be: a token is accepted this long past its expiry.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// What separates the tag of one kind of token from any other use of the secret.
const CONTEXT: &str = "hubgate-token-1.";

/// What a token says about its connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    /// The connection id negotiate returned.
    #[serde(rename = "c")]
    pub connection_id: String,
    /// The hub negotiated (its canonical name).
    #[serde(rename = "h")]
    pub hub: String,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "x")]
    pub expires_ms: u64,
    /// Stateful reconnect granted.
    #[serde(rename = "s", default, skip_serializing_if = "std::ops::Not::not")]
    pub stateful: bool,
    /// What a connect hook admitted at negotiate.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Admission>,
}

/// Signs and checks connection tokens with the cluster secret.
pub(crate) struct TokenSigner {
    key: hmac::Key,
    lifetime: Duration,
}

impl TokenSigner {
    /// Tokens signed with `secret`, valid for `lifetime` after negotiate.
    pub fn new(secret: &str, lifetime: Duration) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), lifetime }
    }

    /// A token for a connection negotiated on `node`, expiring one lifetime from now.
    pub fn issue(&self, node: &str, mut ticket: Ticket) -> String {
        ticket.expires_ms = now_ms().saturating_add(self.lifetime.as_millis() as u64);
        // A Ticket is plain strings and numbers: encoding cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ticket).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(self.tag(node, &payload));
        format!("{node}.{payload}.{tag}")
    }

    /// The ticket of a token this cluster signed and that has not expired; `None` otherwise
    /// (a token of another kind, forged, altered, or too old).
    pub fn verify(&self, token: &str) -> Option<Ticket> {
        let (signed, tag) = token.rsplit_once('.')?;
        let (node, payload) = signed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, &message(node, payload), &tag).ok()?;
        let ticket: Ticket = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let deadline = ticket.expires_ms.saturating_add(CLOCK_SKEW.as_millis() as u64);
        (now_ms() <= deadline).then_some(ticket)
    }

    fn tag(&self, node: &str, payload: &str) -> hmac::Tag {
        hmac::sign(&self.key, &message(node, payload))
    }
}

fn message(node: &str, payload: &str) -> Vec<u8> {
    format!("{CONTEXT}{node}.{payload}").into_bytes()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            connection_id: "node-a.abc".into(),
            hub: "chat".into(),
            expires_ms: 0,
            stateful: true,
            admission: Some(Admission { user_id: Some("alice".into()), groups: vec!["room".into()] }),
        }
    }

    #[test]
    fn a_token_issued_by_one_node_is_verified_by_another_with_the_same_secret() {
        let (a, b) =
            (TokenSigner::new("s3cret", Duration::from_secs(15)), TokenSigner::new("s3cret", Duration::from_secs(15)));
        let token = a.issue("node-a", ticket());
        assert!(token.starts_with("node-a."), "the node part stays first, for balancers that route by it");
        let verified = b.verify(&token).expect("valid on every node");
        assert_eq!(verified.connection_id, "node-a.abc");
        assert_eq!(verified.admission, ticket().admission);
        assert!(verified.stateful);
    }

    #[test]
    fn forged_altered_foreign_and_expired_tokens_are_refused() {
        let signer = TokenSigner::new("s3cret", Duration::from_secs(15));
        let token = signer.issue("node-a", ticket());
        assert!(TokenSigner::new("other", Duration::from_secs(15)).verify(&token).is_none(), "another secret");
        let (signed, _) = token.rsplit_once('.').unwrap();
        assert!(signer.verify(&format!("{signed}.AAAA")).is_none(), "a wrong tag");
        assert!(signer.verify(&token.replacen("node-a", "node-b", 1)).is_none(), "the node part is signed");
        let forged = Ticket { connection_id: "node-a.other".into(), ..ticket() };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let (_, tag) = token.rsplit_once('.').unwrap();
        assert!(signer.verify(&format!("node-a.{payload}.{tag}")).is_none(), "a changed payload");
        for junk in ["", ".", "..", "node-a.abc", "a.b.c", "node-a.%%%.%%%"] {
            assert!(signer.verify(junk).is_none(), "{junk:?}");
        }
        let expired = TokenSigner::new("s3cret", Duration::ZERO);
        let old = expired.issue("node-a", ticket());
        let stale = Ticket { expires_ms: now_ms() - CLOCK_SKEW.as_millis() as u64 - 1_000, ..ticket() };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&stale).unwrap());
        let tag = URL_SAFE_NO_PAD.encode(expired.tag("node-a", &payload));
        assert!(expired.verify(&old).is_some(), "within the clock skew");
        assert!(expired.verify(&format!("node-a.{payload}.{tag}")).is_none(), "past expiry and skew");
    }
}
