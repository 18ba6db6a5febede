//! Random ids and the shape of connection ids. A leaf.
//!
//! A connection id is `{node id}.{22 random characters}`: it names the node that holds the
//! connection, so any node can route to it without a directory.

use base64::Engine;
use rand::RngCore;

/// A fresh random id: 16 bytes from the OS-seeded CSPRNG, base64url without padding (22
/// characters), the shape the official server uses for connection ids and tokens.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh connection id for a connection held by node `node`.
pub fn connection_id(node: &str) -> String {
    format!("{node}.{}", random_id())
}

/// The node a connection id was issued by.
pub fn host_of(connection_id: &str) -> Option<&str> {
    connection_id.rsplit_once('.').map(|(node, _)| node).filter(|node| !node.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters_and_differ() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn a_connection_id_names_its_node() {
        let id = connection_id("node-1");
        assert_eq!(host_of(&id), Some("node-1"));
        assert_eq!(host_of("no-dot"), None);
        assert_eq!(host_of(".x"), None);
    }
}
