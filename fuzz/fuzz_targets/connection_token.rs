//! Connection tokens of stateless clusters (`--cluster-secret`): what a client presents as `id`
//! to any node. Arbitrary strings never panic and are refused unless this secret signed them;
//! a token issued for fields read from the input verifies to the same fields, and changing any
//! one of its bytes makes it refused.
//!
//! Input: byte 0 picks the byte to change, byte 1 what to add to it (0 leaves the token
//! intact); the rest is text, either a token to verify as it is or, split at newlines, the
//! node, connection id and hub of a token to issue.
#![no_main]

use gateway::fuzzing::{issue_token, verify_token};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-cluster-secret";

fuzz_target!(|data: &[u8]| {
    let [at, delta, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    assert_eq!(verify_token(SECRET, text), None, "an unsigned string verified: {text:?}");

    let mut lines = text.split('\n');
    let (Some(node), Some(connection), Some(hub)) = (lines.next(), lines.next(), lines.next()) else { return };
    // Node ids are made by the gateway and never hold the token's separator.
    if node.contains('.') {
        return;
    }
    let fields = (connection.to_owned(), hub.to_owned(), at % 2 == 1);
    let token = issue_token(SECRET, node, fields.clone());
    assert_eq!(verify_token(SECRET, &token), Some(fields), "the token issued does not verify: {token}");
    assert_eq!(verify_token("another secret", &token), None, "verified with another secret: {token}");

    let mut altered = token.clone().into_bytes();
    let index = usize::from(*at) % altered.len();
    altered[index] = altered[index].wrapping_add(*delta);
    if let (true, Ok(altered)) = (*delta != 0, String::from_utf8(altered)) {
        assert_eq!(verify_token(SECRET, &altered), None, "byte {index} of {token} changed and it still verifies");
    }
});
