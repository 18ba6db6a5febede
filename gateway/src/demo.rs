//! The demo chat page at `/` (on unless `--demo-page false`).
//!
//! A visitor picks a name and a room, and chats with everyone in that room on any node: the
//! page uses the official `@microsoft/signalr` browser client against the relay hub at
//! `/hubs/demo` (`JoinGroup`, `SendToGroup`, `GetConnectionId` to show which node it is on).
//!
//! Both files are compiled into the binary, so serving them needs no Node.js and no files on
//! disk: `gateway/assets/demo/index.html` (hand-written) and `gateway/assets/demo/app.js`, built
//! from `demo/` by `scripts/build-demo`, which `scripts/test-all` runs with `--check` so the
//! committed bundle cannot drift from its source.
//!
//! Caching: both answer `Cache-Control: no-cache` with an `ETag` (a hash of the content, fixed
//! at compile time), so browsers revalidate on every load and get a body-less 304 while the
//! binary is unchanged, and never keep an old script after an upgrade.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Where the page's script is served; `index.html` refers to it relative to the page.
pub const SCRIPT_PATH: &str = "/demo/app.js";

/// One embedded file and how it is served.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: &'static str,
}

const INDEX_HTML: &[u8] = include_bytes!("../assets/demo/index.html");
const APP_JS: &[u8] = include_bytes!("../assets/demo/app.js");
const INDEX_ETAG: [u8; 18] = etag_of(INDEX_HTML);
const APP_JS_ETAG: [u8; 18] = etag_of(APP_JS);

static INDEX: Asset = Asset { body: INDEX_HTML, content_type: "text/html; charset=utf-8", etag: ascii(&INDEX_ETAG) };

static SCRIPT: Asset =
    Asset { body: APP_JS, content_type: "text/javascript; charset=utf-8", etag: ascii(&APP_JS_ETAG) };

/// `GET /` (the page) and `GET /demo/app.js` (its script); HEAD is answered too.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { INDEX.serve(&headers) }))
        .route(SCRIPT_PATH, get(|headers: HeaderMap| async move { SCRIPT.serve(&headers) }))
}

impl Asset {
    /// The file, or 304 when the request's `If-None-Match` names its current ETag.
    fn serve(&'static self, request: &HeaderMap) -> Response {
        let etag = HeaderValue::from_static(self.etag);
        let headers = [
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (ETAG, etag),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ];
        if matches_etag(request, self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (headers, [(CONTENT_TYPE, HeaderValue::from_static(self.content_type))], self.body).into_response()
    }
}

/// Whether `If-None-Match` lists `etag` (or is `*`); weak and strong forms compare equal, as
/// RFC 9110 asks for this header.
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == bare)
}

/// A strong ETag for an embedded file, computed at compile time: `"` + 16 hex digits of the
/// file's 64-bit FNV-1a hash + `"` (an identifier of the content, not a security measure).
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    quoted_hex(fnv1a(bytes))
}

const fn ascii(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("hex digits are ASCII"),
    }
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn quoted_hex(value: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ_per_file() {
        for etag in [INDEX.etag, SCRIPT.etag] {
            assert_eq!(etag.len(), 18, "{etag}");
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        }
        assert_ne!(INDEX.etag, SCRIPT.etag);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_forms_and_star() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, HeaderValue::from_str(value).expect("header value"));
            headers
        };
        assert!(matches_etag(&with("\"a\", \"b\""), "\"b\""));
        assert!(matches_etag(&with("W/\"b\""), "\"b\""));
        assert!(matches_etag(&with("*"), "\"b\""));
        assert!(!matches_etag(&with("\"c\""), "\"b\""));
        assert!(!matches_etag(&HeaderMap::new(), "\"b\""));
    }
}
