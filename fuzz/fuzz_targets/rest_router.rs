//! The server REST API (gateway::rest) through the real router of a node (no network):
//! arbitrary methods, paths, queries and bodies. Input: line 1 is `METHOD /path?query`, the
//! rest is the body. The request goes to a node with the API open, and, with a token signed
//! for exactly its URL, to a node with an access key.
//!
//! Nothing panics, no answer is a 500, an error answer under /api is Azure's JSON error shape,
//! and a token for exactly the request URL is admitted: the keyed node answers as the open one
//! (both see the same requests in the same order).
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode, Uri};
use hubgate_fuzz::{first_line, Node};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const ACCESS_KEY: &str = "fuzz-access-key-0123456789";

fn nodes() -> &'static (Node, Node) {
    static NODES: OnceLock<(Node, Node)> = OnceLock::new();
    NODES.get_or_init(|| {
        let jwt_secret = Some("fuzz-client-secret".to_owned());
        let open = gateway::Config { rest_api_open: true, jwt_secret: jwt_secret.clone(), ..Default::default() };
        let keyed = gateway::Config { access_key: Some(ACCESS_KEY.into()), jwt_secret, ..Default::default() };
        (Node::start(open), Node::start(keyed))
    })
}

fn token_for(uri: &Uri) -> String {
    let claims = serde_json::json!({
        "aud": format!("http://localhost{}", uri.path()),
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(ACCESS_KEY.as_bytes()))
        .expect("signs")
}

fn build(method: &Method, uri: &Uri, body: &[u8], token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(method.clone()).uri(uri.clone()).header(header::HOST, "localhost");
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_vec())).expect("a request")
}

fuzz_target!(|data: &[u8]| {
    let (line, body) = first_line(data);
    let Ok(line) = std::str::from_utf8(line) else { return };
    let Some((method, target)) = line.split_once(' ') else { return };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    let Ok(uri) = target.parse::<Uri>() else { return };
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return;
    }
    let (open, keyed) = nodes();
    let answer = open.call(build(&method, &uri, body, None));
    assert_ne!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {uri}: {:?}", answer.body);
    let under_api = uri.path().starts_with("/api/") && uri.path() != gateway::rest::OPENAPI_PATH;
    if under_api && (answer.status.is_client_error() || answer.status.is_server_error()) && !answer.body.is_empty() {
        let error: serde_json::Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{method} {uri} answered {} with a non-JSON body: {e}", answer.status));
        assert!(error.is_object(), "{method} {uri}: error body {error}");
    }
    if under_api {
        let signed = keyed.call(build(&method, &uri, body, Some(&token_for(&uri))));
        assert_eq!(
            signed.status, answer.status,
            "{method} {uri}: a token for this URL was not admitted like the open API"
        );
    }
});
