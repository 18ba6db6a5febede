//! Every backplane channel name, in one place.
//!
//! Names are built from literal parts and used with literal SUBSCRIBE/PUBLISH only, so a group
//! called `*` or `a:b` is just a name. User-chosen parts come last, after a fixed part that
//! names their kind, and the hub name carries its length, so no user-chosen name can produce
//! another kind's channel or another hub's. A prefix lets several clusters share one Redis.
//!
//! | Channel | Subscribed by |
//! |---|---|
//! | `{prefix}:hub:{len}:{hub}:all` | every node with the hub in use |
//! | `{prefix}:hub:{len}:{hub}:group:{group}` | nodes with a local member of the group |
//! | `{prefix}:hub:{len}:{hub}:user:{user}` | nodes with a local connection of the user |
//! | `{prefix}:node:{node}` | that node: connection-targeted sends and control messages |

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "hubgate";

/// Builds channel names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    prefix: String,
}

impl Default for Channels {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Channels {
    /// Channel names starting with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    fn hub(&self, hub: &str) -> String {
        hub_scope(&self.prefix, hub)
    }

    /// Messages for every connection of a hub.
    pub fn hub_all(&self, hub: &str) -> String {
        self.hub(hub) + ":all"
    }

    /// Messages for the members of one group of a hub.
    pub fn hub_group(&self, hub: &str, group: &str) -> String {
        format!("{}:group:{group}", self.hub(hub))
    }

    /// Messages for the connections of one user of a hub.
    pub fn hub_user(&self, hub: &str, user: &str) -> String {
        format!("{}:user:{user}", self.hub(hub))
    }

    /// Messages addressed to one node.
    pub fn node(&self, node_id: &str) -> String {
        format!("{}:node:{node_id}", self.prefix)
    }
}

/// `{prefix}:hub:{len}:{hub}`: the start of every name scoped to one hub. The length makes
/// names unambiguous whatever the hub name holds (`:` included), for channels and for the
/// presence keys alike.
pub(crate) fn hub_scope(prefix: &str, hub: &str) -> String {
    format!("{prefix}:hub:{}:{hub}", hub.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_chosen_names_cannot_collide_across_kinds_or_hubs() {
        let c = Channels::default();
        assert_ne!(c.hub_group("chat", "x"), c.hub_user("chat", "x"));
        assert_ne!(c.hub_group("a:group:b", "c"), c.hub_group("a", "b:group:c"));
        assert_ne!(c.hub_all("a"), c.hub_all("a:all"));
        assert_ne!(c.hub_group("chat", "all"), c.hub_all("chat"));
    }

    #[test]
    fn star_and_unicode_are_plain_names() {
        let c = Channels::default();
        assert_eq!(c.hub_group("chat", "*"), "hubgate:hub:4:chat:group:*");
        assert_eq!(c.hub_user("chat", "é🎉"), "hubgate:hub:4:chat:user:é🎉");
        assert_eq!(c.node("n1"), "hubgate:node:n1");
    }

    #[test]
    fn a_prefix_separates_clusters() {
        assert_ne!(Channels::new("blue").hub_all("chat"), Channels::new("green").hub_all("chat"));
        assert!(Channels::new("blue").hub_all("chat").starts_with("blue:"));
    }
}
