//! The blocking connect hook: what the `connections` / `connect` request says, and what its
//! answer decides, before a connection is accepted (at negotiate, or at the upgrade of a
//! WebSocket that skipped negotiate).
//!
//! The request body is JSON: `{"query": {key: [values]}, "headers": {name: [values]},
//! "claims": {type: [values]}}`, everything the client sent, its token included: the hook is
//! where the application authenticates, so it sees what the client presented. The answer:
//! - 2xx admits; a JSON body `{"userId": "…", "groups": ["…"]}` sets the connection's user and
//!   groups it joins before its first message (both optional; another body admits as is);
//! - 4xx refuses with that status and body, which the official client's `start()` reports;
//! - anything else (5xx, no answer in time, unreachable, too many calls in flight, an open
//!   circuit) refuses with 503: the gate fails closed.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::answer::Reply;
use crate::query::QueryParams;

/// What the hook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admitted(Admission),
    /// Refused: answer the client with this status and body.
    Refused {
        status: u16,
        body: Vec<u8>,
    },
}

/// What an admitting hook set for the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The body of a connect request.
pub fn request_body(headers: &HeaderMap, query: &QueryParams, claims: &[(Box<str>, Box<str>)]) -> Vec<u8> {
    let mut header_map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            header_map.entry(name.as_str()).or_default().push(value);
        }
    }
    let mut query_map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in query.pairs() {
        query_map.entry(key).or_default().push(value);
    }
    let mut claim_map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (kind, value) in claims {
        claim_map.entry(kind).or_default().push(value);
    }
    let body = serde_json::json!({ "query": query_map, "headers": header_map, "claims": claim_map });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What `reply` decides.
pub fn verdict(reply: Reply) -> Verdict {
    match reply {
        Reply::Answered { status: 200..=299, body } => {
            let admission = serde_json::from_slice::<Admission>(&body).unwrap_or_default();
            Verdict::Admitted(admission)
        }
        Reply::Answered { status: status @ 400..=499, body } => Verdict::Refused { status, body },
        _ => Verdict::Refused { status: 503, body: b"The connect hook is unavailable".to_vec() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, body: &str) -> Reply {
        Reply::Answered { status, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_2xx_admits_with_what_its_json_body_sets() {
        let admitted = verdict(answered(200, r#"{"userId":"alice","groups":["room-1","ops"]}"#));
        let expected = Admission { user_id: Some("alice".into()), groups: vec!["room-1".into(), "ops".into()] };
        assert_eq!(admitted, Verdict::Admitted(expected));
        assert_eq!(verdict(answered(204, "")), Verdict::Admitted(Admission::default()));
        assert_eq!(verdict(answered(200, "welcome")), Verdict::Admitted(Admission::default()));
    }

    #[test]
    fn a_4xx_refuses_with_its_status_and_body_and_anything_else_fails_closed() {
        assert_eq!(verdict(answered(403, "banned")), Verdict::Refused { status: 403, body: b"banned".to_vec() });
        for reply in [answered(500, "oops"), answered(302, ""), Reply::TimedOut, Reply::Busy, Reply::CircuitOpen] {
            assert!(matches!(verdict(reply), Verdict::Refused { status: 503, .. }));
        }
    }

    #[test]
    fn the_request_body_lists_query_headers_and_claims_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "session=abc".parse().unwrap());
        let query = QueryParams::parse(Some("room=1&room=2"));
        let claims = [(Box::from("role"), Box::from("admin"))];
        let body: serde_json::Value = serde_json::from_slice(&request_body(&headers, &query, &claims)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "query": {"room": ["1", "2"]},
                "headers": {"cookie": ["session=abc"]},
                "claims": {"role": ["admin"]},
            })
        );
    }
}
