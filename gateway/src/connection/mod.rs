//! One client connection, whatever its transport: the outbound queue its writer drains and the
//! hub session that reads its messages.

pub mod outbound;
pub(crate) mod session;

use base64::Engine;
use rand::RngCore;

/// A fresh random id: 16 bytes from the OS-seeded CSPRNG, base64url without padding (22
/// characters), the shape the official server uses for connection ids and tokens.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_22_url_safe_characters_and_differ() {
        let (a, b) = (super::random_id(), super::random_id());
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }
}
