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
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// The event that only a rule naming it matches.
pub const CONNECT_EVENT: &str = "connect";

/// How long a backend may take to answer one event unless its rule says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
            Self::Names(names) => names.iter().any(|n| n == "*" || n.eq_ignore_ascii_case(name)),
        }
    }

    /// Whether the pattern names `name` itself (`*`, alone or in a list, does not).
    fn names(&self, name: &str) -> bool {
        matches!(self, Self::Names(names) if names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// Why a rule cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("pattern '{0}' has an empty name")]
    EmptyName(String),
    #[error("URL template '{template}': {reason}")]
    Template { template: String, reason: &'static str },
    #[error("'{0}' is not a rule: give a URL template, or key=value pairs separated by ';' (url, hub, category, event, timeout)")]
    Spec(String),
    #[error("rule key '{key}': {reason}")]
    Key { key: String, reason: String },
}

/// One upstream rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    template: String,
    hubs: Pattern,
    categories: Pattern,
    events: Pattern,
    timeout: Duration,
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
        Ok(Self { template: template.to_owned(), hubs, categories, events, timeout: DEFAULT_TIMEOUT })
    }

    /// The same rule, waiting `timeout` for each answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the backend may take to answer one event.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URL template.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether the rule takes some event of `category` of `hub` (whatever the event).
    pub fn covers(&self, hub: &str, category: &str) -> bool {
        self.hubs.matches(hub) && self.categories.matches(category)
    }

    /// The rule as `key=value` pairs separated by `;`, the text [`Rule::from_str`] reads back.
    pub fn spec(&self) -> String {
        format!(
            "url={};hub={};category={};event={};timeout={}",
            self.template,
            self.hubs,
            self.categories,
            self.events,
            humantime::format_duration(self.timeout)
        )
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

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Names(names) => f.write_str(&names.join(",")),
        }
    }
}

/// Reads a rule from the command line or a variable: either a bare URL template (every pattern
/// `*`, the common case) or `url=…;hub=…;category=…;event=…;timeout=…` (patterns left out are
/// `*`, the timeout defaults to 30 s).
impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        // No `key=` before the scheme: a bare template (checked by `Rule::new`).
        let bare = !text.split("://").next().unwrap_or_default().contains('=');
        if bare {
            return Rule::new(text, Pattern::Any, Pattern::Any, Pattern::Any);
        }
        let mut url = None;
        let (mut hubs, mut categories, mut events) = (Pattern::Any, Pattern::Any, Pattern::Any);
        let mut timeout = DEFAULT_TIMEOUT;
        for pair in text.split(';').map(str::trim).filter(|pair| !pair.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else { return Err(RuleError::Spec(text.to_owned())) };
            let value = value.trim();
            match key.trim() {
                "url" => url = Some(value.to_owned()),
                "hub" => hubs = Pattern::parse(value)?,
                "category" => categories = Pattern::parse(value)?,
                "event" => events = Pattern::parse(value)?,
                "timeout" => {
                    timeout =
                        humantime::parse_duration(value).ok().filter(|timeout| !timeout.is_zero()).ok_or_else(|| {
                            RuleError::Key { key: "timeout".into(), reason: "not a duration above 0 (e.g. 10s)".into() }
                        })?
                }
                other => {
                    return Err(RuleError::Key {
                        key: other.to_owned(),
                        reason: "unknown key (url, hub, category, event, timeout)".into(),
                    })
                }
            }
        }
        let url = url.ok_or_else(|| RuleError::Key { key: "url".into(), reason: "missing".into() })?;
        Ok(Rule::new(&url, hubs, categories, events)?.with_timeout(timeout))
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
        let hook_and_rest = rule("http://b/", "*", "*", "connect,*");
        assert!(hook_and_rest.matches(event("chat", "connections", "connect")));
        assert!(hook_and_rest.matches(event("chat", "messages", "Send")));
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
    fn a_rule_reads_from_a_bare_url_or_key_value_pairs_and_prints_back() {
        let bare: Rule = "http://b/{event}".parse().expect("a bare URL");
        assert_eq!(bare, rule("http://b/{event}", "*", "*", "*"));
        assert_eq!(bare.timeout(), DEFAULT_TIMEOUT);
        let full: Rule = "url=https://b/x;hub=chat,news;category=messages;event=*;timeout=5s".parse().expect("pairs");
        assert_eq!(full, rule("https://b/x", "chat,news", "messages", "*").with_timeout(Duration::from_secs(5)));
        assert_eq!(full.spec().parse::<Rule>().expect("its own spec"), full);
        assert!(matches!("hub=chat".parse::<Rule>(), Err(RuleError::Key { key, .. }) if key == "url"));
        assert!(matches!("url=http://b;color=red".parse::<Rule>(), Err(RuleError::Key { key, .. }) if key == "color"));
        assert!(
            matches!("url=http://b;timeout=0s".parse::<Rule>(), Err(RuleError::Key { key, .. }) if key == "timeout")
        );
        assert!(matches!("nonsense".parse::<Rule>(), Err(RuleError::Template { .. })));
        assert!(matches!("url=http://b;oops".parse::<Rule>(), Err(RuleError::Spec(_))));
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
