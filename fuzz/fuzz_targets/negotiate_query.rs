//! Negotiate query strings and connection-token handling, through the real router of two nodes
//! (in-memory backplane, no network): one that keeps its connections, and a stateless one
//! (`--cluster-secret`) whose tokens are signed and checked on every request. The query parser
//! alone must not panic; then, on each node:
//!
//! line 1: the negotiate query; line 2: the hub name; line 3: the query of the later
//! requests, where `{id}` stands for the token negotiate gave (`{cid}` for the connection id);
//! line 4: the requests, one letter each (`L` long poll, `S` event stream, `W` WebSocket
//! upgrade, `P` POST of the rest of the input, `D` DELETE, `N` negotiate again).
//!
//! Every answer is one the protocol allows (never a 500), and negotiate answers a JSON document
//! whose token differs from the connection id from version 1 on.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use gateway::query::QueryParams;
use hubgate_fuzz::{first_line, Node};
use libfuzzer_sys::fuzz_target;

fn nodes() -> &'static [Node; 2] {
    static NODES: OnceLock<[Node; 2]> = OnceLock::new();
    NODES.get_or_init(|| {
        let config = gateway::Config { poll_timeout: std::time::Duration::from_secs(5), ..Default::default() };
        let stateless =
            gateway::Config { cluster_secret: Some("fuzz-cluster-secret-0123456789".into()), ..config.clone() };
        [Node::start(config), Node::start(stateless)]
    })
}

fn request(method: Method, uri: &str) -> Option<axum::http::request::Builder> {
    let uri: axum::http::Uri = uri.parse().ok()?;
    Some(Request::builder().method(method).uri(uri).header(header::HOST, "localhost"))
}

fn negotiate(node: &Node, hub: &str, query: &str) -> Option<(String, String)> {
    let request = request(Method::POST, &format!("/hubs/{hub}/negotiate?{query}"))?.body(Body::empty()).ok()?;
    let answer = node.call(request);
    assert_ne!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "negotiate?{query}");
    if answer.status != StatusCode::OK {
        let status = answer.status.as_u16();
        assert!(
            matches!(status, 400 | 401 | 404 | 429 | 503),
            "negotiate?{query} answered {status}: {:?}",
            answer.body
        );
        return None;
    }
    let document: serde_json::Value = serde_json::from_slice(&answer.body).expect("negotiate answers JSON");
    if document.get("error").is_some() {
        return None;
    }
    let id = document["connectionId"].as_str().expect("a connection id").to_owned();
    let version = document["negotiateVersion"].as_u64().expect("a negotiate version");
    let token = match document.get("connectionToken").and_then(|t| t.as_str()) {
        Some(token) => {
            assert_eq!(version, 1, "a token only from version 1");
            assert_ne!(token, id, "the token is not the public id");
            token.to_owned()
        }
        None => {
            assert_eq!(version, 0, "version 1 gives a token");
            id.clone()
        }
    };
    assert!(!document["availableTransports"].as_array().expect("transports").is_empty());
    Some((id, token))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = QueryParams::parse(Some(text));
    let _ = parsed.get("id");
    let _ = parsed.without(&["id", "access_token"]).get("negotiateVersion");

    let (negotiate_query, rest) = first_line(text.as_bytes());
    let (hub, rest) = first_line(rest);
    let (later_query, rest) = first_line(rest);
    let (steps, body) = first_line(rest);
    let as_text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (negotiate_query, hub, later_query) = (as_text(negotiate_query), as_text(hub), as_text(later_query));
    for node in nodes() {
        exercise(node, &negotiate_query, &hub, &later_query, steps, body);
    }
});

/// Negotiates on `node`, then sends it the requests `steps` names.
fn exercise(node: &Node, negotiate_query: &str, hub: &str, later_query: &str, steps: &[u8], body: &[u8]) {
    let Some((id, token)) = negotiate(node, hub, negotiate_query) else { return };
    let query = later_query.replace("{id}", &hubgate_fuzz::query_value(&token)).replace("{cid}", &id);
    let uri = format!("/hubs/{hub}?{query}");
    for step in steps.iter().take(6) {
        let built = match step {
            b'L' => request(Method::GET, &uri).and_then(|r| r.body(Body::empty()).ok()),
            b'S' => request(Method::GET, &uri)
                .and_then(|r| r.header(header::ACCEPT, "text/event-stream").body(Body::empty()).ok()),
            b'W' => request(Method::GET, &uri).and_then(|r| {
                r.header(header::CONNECTION, "upgrade")
                    .header(header::UPGRADE, "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .body(Body::empty())
                    .ok()
            }),
            b'P' => request(Method::POST, &uri).and_then(|r| r.body(Body::from(body.to_vec())).ok()),
            b'D' => request(Method::DELETE, &uri).and_then(|r| r.body(Body::empty()).ok()),
            b'N' => {
                let _ = negotiate(node, hub, negotiate_query);
                continue;
            }
            _ => continue,
        };
        let Some(request) = built else { return };
        // A POST to a connection whose session does not read yet (no poll started it) waits
        // for room once a few bodies are queued; in production the reaper frees it after the
        // disconnect timeout (404), but the reaper measures std::time::Instant, which the
        // paused clock of this harness does not move. Any other request must be answered.
        let answer = match node.try_call(request) {
            Some(answer) => answer,
            None if *step == b'P' => continue,
            None => panic!("step {} on {uri}: no answer within 10 minutes", char::from(*step)),
        };
        let status = answer.status.as_u16();
        assert!(
            matches!(status, 200 | 202 | 204 | 400 | 401 | 403 | 404 | 405 | 409 | 413 | 426 | 503),
            "step {} on {uri} answered {status}: {:?}",
            char::from(*step),
            answer.body
        );
    }
}
