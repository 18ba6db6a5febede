//! The connect hook at the door: before negotiate answers (or a WebSocket that skipped
//! negotiate is upgraded), a hub with a `connect` rule asks its backend whether the connection
//! may open (see [`crate::upstream::admission`]). A refusal is the response the client gets;
//! an admission's user and groups are applied when the connection starts.

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Identity;
use crate::query::QueryParams;
use crate::upstream::admission::{self, Admission, Verdict};
use crate::upstream::request::Subject;
use crate::upstream::{Payload, Upstream};

/// Who is asking to connect, and with what request.
pub(super) struct Knock<'a> {
    pub hub: &'a str,
    pub connection_id: &'a str,
    pub identity: &'a Identity,
    pub headers: &'a HeaderMap,
    pub query: &'a QueryParams,
}

/// The hook's admission, or the response that refuses the connection.
#[allow(clippy::result_large_err)]
pub(super) async fn ask(upstream: &Upstream, knock: Knock<'_>) -> Result<Admission, Response> {
    let claims = knock.identity.claims.as_deref().unwrap_or_default();
    let query = knock.query.without(&["id", "access_token", "_"]).encode();
    let subject = Subject {
        connection_id: knock.connection_id,
        hub: knock.hub,
        category: "connections",
        event: crate::upstream::rules::CONNECT_EVENT,
        user_id: knock.identity.user_id.as_deref(),
        claims,
        query: Some(query.as_str()).filter(|query| !query.is_empty()),
    };
    let body = admission::request_body(knock.headers, knock.query, claims);
    let Some(reply) = upstream.call(&subject, Payload::json(body)).await else { return Ok(Admission::default()) };
    match admission::verdict(reply) {
        Verdict::Admitted(admission) => Ok(admission),
        Verdict::Refused { status, body } => {
            tracing::info!(status, hub = knock.hub, "the connect hook refused a connection");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Err((status, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
        }
    }
}

/// `identity` with the user an admission set, if it set one.
pub(super) fn admitted(mut identity: Identity, admission: Option<&Admission>) -> Identity {
    if let Some(user) = admission.and_then(|admission| admission.user_id.as_deref()).filter(|u| !u.is_empty()) {
        identity.user_id = Some(Arc::from(user));
    }
    identity
}

/// The groups an admission named.
pub(super) fn groups(admission: Option<&Admission>) -> Box<[Box<str>]> {
    admission
        .map(|admission| admission.groups.iter().map(|group| Box::from(group.as_str())).collect())
        .unwrap_or_default()
}
