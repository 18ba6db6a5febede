//! JWT handling (gateway::auth): arbitrary token strings, in the `Authorization` header and in
//! the `access_token` query parameter, checked by authenticators configured with an HS256
//! secret and with an RS256 public key. Nothing panics; a token is accepted only with the
//! algorithm the authenticator was configured for (no `none`, no HS256 signed with the RSA
//! public key), also by one that takes Azure-style tokens signed with an access key; header
//! and query give the same answer. Inputs whose first byte is odd are
//! claims instead: signed with the right key, they are accepted when they expire in the
//! future, and the identity is the one the claims name.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderMap, HeaderValue};
use gateway::auth::{AuthSettings, Authenticator, Identity};
use gateway::query::QueryParams;
use hubgate_fuzz::query_value;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";
const ACCESS_KEY: &str = "fuzz-access-key";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/keys");

struct Setup {
    hs256: Authenticator,
    rs256: Authenticator,
    /// HS256 plus an access key: tokens for Azure's client endpoint take the access-key path.
    azure: Authenticator,
    rs256_signing: EncodingKey,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let hs = AuthSettings { jwt_secret: Some(SECRET.into()), ..AuthSettings::default() };
        let public = std::path::PathBuf::from(format!("{KEYS}/rs256-public.pem"));
        let rs = AuthSettings { jwt_public_key: Some(public), ..AuthSettings::default() };
        let azure = AuthSettings { access_keys: vec![ACCESS_KEY.into()], ..hs.clone() };
        let private = std::fs::read(format!("{KEYS}/rs256-private.pem")).expect("the test private key");
        Setup {
            hs256: Authenticator::new(&hs).expect("HS256 authenticator"),
            rs256: Authenticator::new(&rs).expect("RS256 authenticator"),
            azure: Authenticator::new(&azure).expect("access-key authenticator"),
            rs256_signing: EncodingKey::from_rsa_pem(&private).expect("RSA private key"),
        }
    })
}

fn by_header(auth: &Authenticator, token: &str) -> Option<Result<Identity, gateway::auth::AuthError>> {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    Some(auth.authenticate(&headers, &QueryParams::default()))
}

fn by_query(auth: &Authenticator, token: &str) -> Result<Identity, gateway::auth::AuthError> {
    let query = QueryParams::parse(Some(&format!("access_token={}", query_value(token))));
    auth.authenticate(&HeaderMap::new(), &query)
}

fn raw_token(token: &str) {
    let setup = setup();
    let alg = jsonwebtoken::decode_header(token).ok().map(|h| h.alg);
    let authenticators =
        [(&setup.hs256, Algorithm::HS256), (&setup.rs256, Algorithm::RS256), (&setup.azure, Algorithm::HS256)];
    for (auth, expected) in authenticators {
        let from_query = by_query(auth, token);
        if from_query.is_ok() {
            assert_eq!(alg, Some(expected), "a token accepted with another algorithm: {token:?}");
        }
        let plain = !token.is_empty() && token.trim() == token;
        if let (true, Some(from_header)) = (plain, by_header(auth, token)) {
            assert_eq!(from_header.is_ok(), from_query.is_ok(), "header and query disagree on {token:?}");
        }
    }
}

fn expected_identity(claims: &serde_json::Map<String, serde_json::Value>, user_claim: &str) -> Identity {
    let user_id = match claims.get(user_claim) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Arc::from(s.as_str())),
        Some(serde_json::Value::Number(n)) => Some(Arc::from(n.to_string())),
        _ => None,
    };
    let groups = match claims.get("groups") {
        Some(serde_json::Value::String(g)) => Some(Arc::from([Box::from(g.as_str())])),
        Some(serde_json::Value::Array(items)) => {
            Some(items.iter().filter_map(serde_json::Value::as_str).map(Box::from).collect())
        }
        _ => None,
    };
    Identity { user_id, groups, claims: None }
}

fn signed_claims(data: &[u8], with_rsa: bool) {
    let Ok(serde_json::Value::Object(mut claims)) = serde_json::from_slice(data) else { return };
    // jsonwebtoken 9 reads `sub` and `nbf` while validating even when it does not check them;
    // an array or object there fails the whole token (refused, so it fails closed).
    let readable =
        |claim: &str| !matches!(claims.get(claim), Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)));
    let valid = !claims.contains_key("exp") && readable("sub") && readable("nbf");
    if valid {
        claims.insert("exp".into(), (jsonwebtoken::get_current_timestamp() + 3600).into());
    }
    let setup = setup();
    let hs_key = EncodingKey::from_secret(SECRET.as_bytes());
    let mut signed = vec![(&setup.hs256, jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &hs_key))];
    if with_rsa {
        let rs = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &setup.rs256_signing);
        signed.push((&setup.rs256, rs));
    }
    for (auth, token) in signed {
        let token = token.expect("claims that are a JSON object sign");
        match by_query(auth, &token) {
            Ok(identity) => assert_eq!(identity, expected_identity(&claims, "sub"), "identity of {claims:?}"),
            Err(error) => assert!(!valid, "a valid token for {claims:?} was refused: {error}"),
        }
    }
    // The same claims signed for the other algorithm never pass.
    let confused = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &hs_key).expect("signs");
    assert!(by_query(&setup.rs256, &confused).is_err(), "an HS256 token passed the RS256 authenticator");

    // Signed with the access key for Azure's client endpoint, the claims pass the access-key
    // authenticator (the user in `nameid`), and no other.
    if valid {
        claims.insert("aud".into(), "https://fuzz.example/client/?hub=chat".into());
        let key = EncodingKey::from_secret(ACCESS_KEY.as_bytes());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signs");
        let identity = by_query(&setup.azure, &token).unwrap_or_else(|e| panic!("{claims:?} signed with the key: {e}"));
        assert_eq!(identity, expected_identity(&claims, "nameid"), "identity of {claims:?}");
        assert!(by_query(&setup.hs256, &token).is_err(), "the access key passed the HS256 secret's check");
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    if mode % 2 == 1 {
        signed_claims(rest, mode % 4 == 3);
    } else if let Ok(token) = std::str::from_utf8(rest) {
        raw_token(token);
    }
});
