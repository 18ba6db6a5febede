//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), for decoders that are private to
//! this crate: the backplane envelope and the connection token. Not part of the API: hidden
//! from the docs and free to change with the targets.
//!
//! Each function runs the decoder on untrusted input and reports what a fuzz target asserts on,
//! so the targets check the real code instead of a copy of it.

use std::time::Duration;

use crate::cluster::envelope::Envelope;
use crate::transport::token::{Ticket, TokenSigner};

/// Decodes `bytes` as a backplane envelope (what any process with access to Redis can publish).
/// `None` when they are not one; otherwise `Ok` when encode → decode gives back the same
/// envelope with the same encoding, or `Err` saying what changed.
pub fn envelope_round_trip(bytes: &[u8]) -> Option<Result<(), String>> {
    let envelope = Envelope::decode(bytes).ok()?;
    let encoded = envelope.encode();
    Some(match Envelope::decode(&encoded) {
        Err(error) => Err(format!("re-decoding {envelope:?} failed: {error}")),
        // Debug text stands in where `==` cannot: a NaN in a client result is never equal.
        Ok(again) if again != envelope && format!("{again:?}") != format!("{envelope:?}") => {
            Err(format!("{envelope:?} came back as {again:?}"))
        }
        Ok(again) if again.encode() != encoded => Err(format!("the encoding of {envelope:?} is not stable")),
        Ok(_) => Ok(()),
    })
}

/// What a verified connection token names: connection id, hub, stateful reconnect granted.
pub type TokenFields = (String, String, bool);

/// Verifies `token` as the connection token of a cluster with `secret` (`--cluster-secret`);
/// `None` when it is refused (forged, altered, malformed or expired).
pub fn verify_token(secret: &str, token: &str) -> Option<TokenFields> {
    let ticket = TokenSigner::new(secret, Duration::from_secs(60)).verify(token)?;
    Some((ticket.connection_id, ticket.hub, ticket.stateful))
}

/// The token a node named `node` of a cluster with `secret` issues for these fields, valid for
/// a minute.
pub fn issue_token(secret: &str, node: &str, fields: TokenFields) -> String {
    let (connection_id, hub, stateful) = fields;
    let ticket = Ticket { connection_id, hub, expires_ms: 0, stateful, admission: None };
    TokenSigner::new(secret, Duration::from_secs(60)).issue(node, ticket)
}
