//! `POST {hub}/negotiate`: creates a connection and tells the client how to reach it.
//!
//! Before anything costly (token checks, the connect hook), the client address's rate of new
//! connections is checked; the connection then takes its permit under the node's limits (the
//! node's slot before the connect hook, so a full node costs the backend nothing, and the
//! user's once the hook has said who the user is). See [`crate::limits`].

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use std::sync::Arc;

use super::connections::Negotiated;
use super::token::Ticket;
use super::{gate, Endpoint, HubRequest};
use crate::upstream::admission::Admission;

/// The highest negotiate version this server speaks.
const MAX_NEGOTIATE_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateResponse<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    use_stateful_reconnect: bool,
    negotiate_version: u32,
    connection_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_token: Option<&'a str>,
    available_transports: Vec<Transport>,
}

#[derive(Serialize)]
struct Transport {
    transport: &'static str,
    #[serde(rename = "transferFormats")]
    transfer_formats: &'static [&'static str],
}

pub(super) async fn negotiate(endpoint: &Endpoint, request: &HubRequest) -> Response {
    let HubRequest { hub, headers, query, peer, .. } = request;
    let state = &endpoint.state;
    if state.is_shutting_down() {
        return super::shutting_down();
    }
    if let Err(refusal) = state.limits.check_rate(state.proxies.client_ip(*peer, headers)) {
        return refusal.into_response();
    }
    let name = match endpoint.hub_name(hub.as_deref()) {
        Ok(name) => name,
        Err(response) => return response,
    };
    let identity = match endpoint.identify(&name, headers, query, None) {
        Ok((identity, _)) => identity,
        Err(response) => return response,
    };
    let version = match query.get("negotiateVersion") {
        None => 0,
        Some(raw) => match raw.parse::<u32>() {
            Ok(requested) => requested.min(MAX_NEGOTIATE_VERSION),
            // The official server answers a bad version with an error body and status 200.
            Err(_) => {
                return json(
                    &serde_json::json!({ "error": format!("The client requested an invalid protocol version '{raw}'") }),
                )
            }
        },
    };
    // The token's user first, so a user at its limit costs the connect hook nothing; again
    // below if the hook names another user.
    let admitted = state
        .limits
        .admit()
        .and_then(|mut permit| state.limits.admit_user(&mut permit, identity.user_id.as_ref()).map(|()| permit));
    let mut permit = match admitted {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(),
    };
    let connection_id = endpoint.state.node.new_connection_id();
    let mut admission = None;
    if let Some(upstream) = endpoint.connect_hook(&name) {
        let knock = gate::Knock { hub: &name, connection_id: &connection_id, identity: &identity, headers, query };
        match gate::ask(upstream, knock).await {
            Ok(admitted) => admission = Some(Arc::new(admitted)),
            Err(refusal) => return refusal,
        }
    }
    let identity = gate::admitted(identity, admission.as_deref());
    if let Err(refusal) = state.limits.admit_user(&mut permit, identity.user_id.as_ref()) {
        return refusal.into_response();
    }
    let lifetime = match endpoint.lifetime_of(&name) {
        Ok(lifetime) => lifetime,
        Err(response) => return response,
    };
    // Granted only to clients that ask, as the official client refuses an unasked grant.
    let stateful = endpoint.state.config.stateful_reconnect
        && query.get("useStatefulReconnect").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let negotiated = match &endpoint.state.stateless {
        // Stateless nodes keep nothing: the token says it all, and any node claims it.
        // (Negotiate version 0 has no separate token: the id is the token, so it stays here.)
        // The node that claims the token takes its slot under its own limits then; the checks
        // above only refuse early what this node would refuse.
        Some(stateless) if version > 0 => {
            drop(permit);
            let admission = admission.map(|admission| Admission::clone(&admission));
            let ticket = Ticket { connection_id, hub: lifetime.name().to_owned(), expires_ms: 0, stateful, admission };
            let connection_id: Arc<str> = Arc::from(ticket.connection_id.as_str());
            Negotiated { connection_id, token: stateless.issue(ticket) }
        }
        _ => {
            let table = &endpoint.state.connections;
            let Some(negotiated) =
                table.negotiate(lifetime.name(), version > 0, connection_id, admission, Some(permit))
            else {
                return super::text(StatusCode::SERVICE_UNAVAILABLE, "Too many connections are being negotiated");
            };
            if stateful {
                endpoint.state.resumable.grant(&negotiated.token);
            }
            negotiated
        }
    };
    json(&NegotiateResponse {
        use_stateful_reconnect: stateful,
        negotiate_version: version,
        connection_id: &negotiated.connection_id,
        connection_token: (version > 0).then_some(negotiated.token.as_str()),
        available_transports: endpoint
            .transports
            .iter()
            .map(|t| Transport { transport: t.name(), transfer_formats: t.transfer_formats() })
            .collect(),
    })
}

fn json(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
