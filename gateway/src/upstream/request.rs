//! What an upstream request carries besides its body, as Azure SignalR Service sends it, so a
//! backend written for Azure's serverless mode reads hubgate's requests unchanged: the
//! `X-ASRS-*` headers, and a signature that proves the request comes from a holder of the
//! access key.
//!
//! The signature is HMAC-SHA256 of the connection id keyed with each configured access key,
//! hex-encoded, as `sha256=<hex>` joined by `,` (two keys during a key rotation): a backend
//! accepts the request when any entry matches the signature it computes with its own key.

use std::fmt::Write;

use ring::hmac;

/// Who and what an upstream request is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub connection_id: &'a str,
    pub hub: &'a str,
    pub category: &'a str,
    pub event: &'a str,
    /// The connection's user, when it has one.
    pub user_id: Option<&'a str>,
    /// The connection's token claims as (type, value) pairs, in token order.
    pub claims: &'a [(Box<str>, Box<str>)],
    /// The query string of the request that opened the connection, without `?`.
    pub query: Option<&'a str>,
}

/// `sha256=<hex>` for each key, joined by `,`.
pub fn signature(connection_id: &str, keys: &[&str]) -> String {
    let mut text = String::new();
    for (index, key) in keys.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), connection_id.as_bytes());
        text.push_str("sha256=");
        for byte in tag.as_ref() {
            let _ = write!(text, "{byte:02x}");
        }
    }
    text
}

/// The headers of an upstream request about `subject`, signed with `keys` (none: no
/// signature header).
pub fn headers(subject: &Subject<'_>, keys: &[&str]) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("X-ASRS-Connection-Id", subject.connection_id.to_owned()),
        ("X-ASRS-Hub", subject.hub.to_owned()),
        ("X-ASRS-Category", subject.category.to_owned()),
        ("X-ASRS-Event", subject.event.to_owned()),
    ];
    if let Some(user) = subject.user_id {
        headers.push(("X-ASRS-User-Id", user.to_owned()));
    }
    if !subject.claims.is_empty() {
        let claims: Vec<String> = subject.claims.iter().map(|(kind, value)| format!("{kind}: {value}")).collect();
        headers.push(("X-ASRS-User-Claims", claims.join(", ")));
    }
    if let Some(query) = subject.query.map(without_access_token).filter(|q| !q.is_empty()) {
        headers.push(("X-ASRS-Client-Query", format!("?{query}")));
    }
    if !keys.is_empty() {
        headers.push(("X-ASRS-Signature", signature(subject.connection_id, keys)));
    }
    headers
}

/// `query` without its `access_token` pairs (the client's token is not the backend's business),
/// the other pairs as they were sent.
fn without_access_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !key.eq_ignore_ascii_case("access_token") && !pair.is_empty()
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_connection_id_per_key() {
        // The widely published HMAC-SHA256 example: key "key", message "The quick brown fox …".
        assert_eq!(
            signature("The quick brown fox jumps over the lazy dog", &["key"]),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let two = signature("conn", &["a", "b"]);
        let parts: Vec<&str> = two.split(',').collect();
        assert_eq!(parts, [signature("conn", &["a"]), signature("conn", &["b"])]);
    }

    #[test]
    fn headers_name_the_connection_and_leave_out_what_it_lacks() {
        let claims: Vec<(Box<str>, Box<str>)> = vec![("sub".into(), "alice".into()), ("role".into(), "admin".into())];
        let subject = Subject {
            connection_id: "n1.abc",
            hub: "chat",
            category: "messages",
            event: "SendMessage",
            user_id: Some("alice"),
            claims: &claims,
            query: Some("room=1&access_token=secret.jwt&Access_Token=x&lang=en"),
        };
        let headers = headers(&subject, &["key"]);
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("X-ASRS-Connection-Id"), Some("n1.abc"));
        assert_eq!(get("X-ASRS-Hub"), Some("chat"));
        assert_eq!(get("X-ASRS-Category"), Some("messages"));
        assert_eq!(get("X-ASRS-Event"), Some("SendMessage"));
        assert_eq!(get("X-ASRS-User-Id"), Some("alice"));
        assert_eq!(get("X-ASRS-User-Claims"), Some("sub: alice, role: admin"));
        assert_eq!(get("X-ASRS-Client-Query"), Some("?room=1&lang=en"));
        assert_eq!(get("X-ASRS-Signature"), Some(signature("n1.abc", &["key"]).as_str()));

        let anonymous = Subject { user_id: None, claims: &[], query: Some("access_token=x"), ..subject };
        let headers = super::headers(&anonymous, &[]);
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["X-ASRS-Connection-Id", "X-ASRS-Hub", "X-ASRS-Category", "X-ASRS-Event"]);
    }
}
