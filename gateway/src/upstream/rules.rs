//! Upstream routing rules: which backend URL, if any, an event of a hub goes to.
//!
//! Rules are tried in order and the first that matches wins; an event no rule matches is not
//! sent anywhere. A rule names its hubs, categories (`connections`, `messages`) and events
//! (`connected`, `disconnected`, a client's invocation target, …) each as a pattern: `*` for
//! any, a comma-separated list, or one name, compared without regard to case. The URL is a
//! template in which `{hub}`, `{category}` and `{event}` are replaced by the event's values,
//! percent-encoded, so a backend can route on its path.
//!
//! `connect` (the blocking connect hook) is matched only by a rule that names it: `*` never
//! matches it, so a backend written for Azure, which has no such event, is never asked.

use std::fmt::Write;

use thiserror::Error;

/// The event that only a rule naming it matches.
pub const CONNECT_EVENT: &str = "connect";

/// A name pattern: `*`, or the names it matches (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Any,
    Names(Vec<String>),
}

impl Pattern {
    /// Reads `*`, `a,b,c` or `a` (spaces around names ignored).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        if text.trim() == "*" {
            return Ok(Self::Any);
        }
        let names: Vec<String> = text.split(',').map(|name| name.trim().to_lowercase()).collect();
        if names.iter().any(String::is_empty) {
            return Err(RuleError::EmptyName(text.to_owned()));
        }
        Ok(Self::Names(names))
    }

    /// Whether `name` matches (without regard to case).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Names(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }

    /// Whether the pattern names `name` itself (`*` does not).
    fn names(&self, name: &str) -> bool {
        matches!(self, Self::Names(_)) && self.matches(name)
    }
}

/// Why a rule cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("pattern '{0}' has an empty name")]
    EmptyName(String),
    #[error("URL template '{template}': {reason}")]
    Template { template: String, reason: &'static str },
}

/// One upstream rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    template: String,
    hubs: Pattern,
    categories: Pattern,
    events: Pattern,
}

/// The values an event is routed by.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub hub: &'a str,
    pub category: &'a str,
    pub event: &'a str,
}

impl Rule {
    /// A rule sending the events its patterns match to `template`, which must be an `http://`
    /// or `https://` URL and may only use the placeholders `{hub}`, `{category}` and `{event}`.
    pub fn new(template: &str, hubs: Pattern, categories: Pattern, events: Pattern) -> Result<Self, RuleError> {
        check_template(template)?;
        Ok(Self { template: template.to_owned(), hubs, categories, events })
    }

    /// Whether this rule takes `event`.
    pub fn matches(&self, event: Event<'_>) -> bool {
        let event_matches = if event.event.eq_ignore_ascii_case(CONNECT_EVENT) {
            self.events.names(CONNECT_EVENT)
        } else {
            self.events.matches(event.event)
        };
        event_matches && self.hubs.matches(event.hub) && self.categories.matches(event.category)
    }

    /// The URL for `event`: the template with its placeholders replaced, percent-encoded.
    pub fn url(&self, event: Event<'_>) -> String {
        let mut url = String::with_capacity(self.template.len() + 32);
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find('{') {
            url.push_str(&rest[..start]);
            let after = &rest[start..];
            let (value, skip) = match after {
                a if a.starts_with("{hub}") => (event.hub, "{hub}".len()),
                a if a.starts_with("{category}") => (event.category, "{category}".len()),
                a if a.starts_with("{event}") => (event.event, "{event}".len()),
                _ => ("{", 1),
            };
            if skip == 1 {
                url.push('{');
            } else {
                percent_encode(&mut url, value);
            }
            rest = &after[skip..];
        }
        url.push_str(rest);
        url
    }
}

/// The first rule of `rules` that takes `event`.
pub fn route<'r>(rules: &'r [Rule], event: Event<'_>) -> Option<&'r Rule> {
    rules.iter().find(|rule| rule.matches(event))
}

fn check_template(template: &str) -> Result<(), RuleError> {
    let invalid = |reason| Err(RuleError::Template { template: template.to_owned(), reason });
    if !(template.starts_with("http://") || template.starts_with("https://")) {
        return invalid("must start with http:// or https://");
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let Some(end) = after.find('}') else { return invalid("has an unclosed '{'") };
        if !matches!(&after[..=end], "{hub}" | "{category}" | "{event}") {
            return invalid("may only use {hub}, {category} and {event}");
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Appends `value` with every byte outside RFC 3986's unreserved set percent-encoded.
fn percent_encode(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).expect("a valid pattern")
    }

    fn rule(template: &str, hubs: &str, categories: &str, events: &str) -> Rule {
        Rule::new(template, pattern(hubs), pattern(categories), pattern(events)).expect("a valid rule")
    }

    fn event<'a>(hub: &'a str, category: &'a str, event: &'a str) -> Event<'a> {
        Event { hub, category, event }
    }

    #[test]
    fn patterns_are_any_a_list_or_one_name_without_regard_to_case() {
        assert!(pattern("*").matches("Chat"));
        assert!(pattern("chat, News").matches("NEWS"));
        assert!(!pattern("chat,news").matches("admin"));
        assert!(pattern("Chat").matches("chat"));
        assert_eq!(Pattern::parse("a,,b"), Err(RuleError::EmptyName("a,,b".into())));
    }

    #[test]
    fn the_first_matching_rule_wins_and_unmatched_events_go_nowhere() {
        let rules = [
            rule("http://b/chat", "chat", "messages", "*"),
            rule("http://b/all/{hub}", "*", "*", "*"),
            rule("http://b/never", "*", "*", "*"),
        ];
        assert_eq!(
            route(&rules, event("chat", "messages", "Send")).map(|r| r.url(event("chat", "messages", "Send"))),
            Some("http://b/chat".into())
        );
        assert_eq!(
            route(&rules, event("news", "connections", "connected")).map(|r| r.template.as_str()),
            Some("http://b/all/{hub}")
        );
        let only_chat = [rule("http://b/chat", "chat", "*", "*")];
        assert!(route(&only_chat, event("news", "messages", "Send")).is_none());
    }

    #[test]
    fn connect_is_matched_only_by_a_rule_that_names_it() {
        let star = rule("http://b/", "*", "*", "*");
        assert!(!star.matches(event("chat", "connections", "connect")));
        assert!(star.matches(event("chat", "connections", "connected")));
        let hook = rule("http://b/", "*", "connections", "connect,connected");
        assert!(hook.matches(event("chat", "connections", "Connect")));
    }

    #[test]
    fn placeholders_are_replaced_and_percent_encoded() {
        let r = rule("https://b/api/{hub}/{category}/{event}?x={event}", "*", "*", "*");
        assert_eq!(
            r.url(event("chat", "messages", "Send Message/é")),
            "https://b/api/chat/messages/Send%20Message%2F%C3%A9?x=Send%20Message%2F%C3%A9"
        );
    }

    #[test]
    fn templates_must_be_http_urls_with_known_placeholders() {
        let bad = |template: &str| Rule::new(template, Pattern::Any, Pattern::Any, Pattern::Any).unwrap_err();
        assert!(matches!(bad("ftp://b/"), RuleError::Template { reason: "must start with http:// or https://", .. }));
        assert!(matches!(
            bad("http://b/{user}"),
            RuleError::Template { reason: "may only use {hub}, {category} and {event}", .. }
        ));
        assert!(matches!(bad("http://b/{hub"), RuleError::Template { reason: "has an unclosed '{'", .. }));
    }
}
