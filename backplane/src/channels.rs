//! Every backplane channel name, in one place.
//!
//! Names are built from literal parts and used with literal SUBSCRIBE/PUBLISH only, so a group
//! called `*` or `a:b` is just a name. Group and user names are placed last, after a fixed
//! prefix, so no user-chosen name can produce another kind's channel: `group:x` and `user:x`
//! differ in their fixed part whatever `x` is.

/// Prefix of every channel, so hubgate can share a Redis with other software.
pub const PREFIX: &str = "hubgate";

/// Messages for every connection of a hub, on every node. Every node subscribes.
pub fn hub_all(hub: &str) -> String {
    format!("{PREFIX}:hub:{}:{hub}:all", hub.len())
}

/// Messages for the members of one group of a hub. Subscribed while a node has a local member.
pub fn hub_group(hub: &str, group: &str) -> String {
    format!("{PREFIX}:hub:{}:{hub}:group:{group}", hub.len())
}

/// Messages for the connections of one user of a hub. Subscribed while a node has one locally.
pub fn hub_user(hub: &str, user: &str) -> String {
    format!("{PREFIX}:hub:{}:{hub}:user:{user}", hub.len())
}

/// Messages addressed to one node: connection-targeted sends and control traffic.
pub fn node(node_id: &str) -> String {
    format!("{PREFIX}:node:{node_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_chosen_names_cannot_collide_across_kinds() {
        assert_ne!(hub_group("chat", "x"), hub_user("chat", "x"));
        // A hub name containing the separator cannot pose as another hub's group channel,
        // because the hub name's length is part of the channel.
        assert_ne!(hub_group("a:group:b", "c"), hub_group("a", "b:group:c"));
        assert_ne!(hub_all("a"), hub_all("a:all"));
    }

    #[test]
    fn star_and_unicode_are_plain_names() {
        assert_eq!(hub_group("chat", "*"), "hubgate:hub:4:chat:group:*");
        assert_eq!(hub_user("chat", "é🎉"), "hubgate:hub:4:chat:user:é🎉");
    }
}
