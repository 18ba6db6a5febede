//! The long-polling transport: each GET ("poll") returns whatever messages are queued, waiting
//! up to the poll timeout for some; the client sends with POSTs and ends with DELETE.
//!
//! | Poll | Answer |
//! |---|---|
//! | first poll of a connection | 200, empty, at once (starts the session) |
//! | first poll after POSTs (e.g. the handshake) came before it | starts the session, then as below |
//! | messages queued (now or within the poll timeout) | 200 with all of them |
//! | nothing within the poll timeout | 200, empty (the client polls again) |
//! | the connection's end (its Close) was already delivered, or it was terminated | 204 |
//! | a newer poll arrived meanwhile | 204 for the older one |
//!
//! A connection whose client stops polling for the disconnect timeout is ended by the reaper.
//! There is no keep-alive Ping and no client timeout: the polls themselves show liveness.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;

use super::http::{uncached, HttpConnection};
use super::TransportState;
use crate::queue::outbound::Next;

const OCTET_STREAM: &str = "application/octet-stream";

/// The answer to the poll that created the connection.
pub(super) fn first_poll() -> Response {
    uncached(StatusCode::OK, OCTET_STREAM, Body::empty())
}

/// Waits up to `timeout` for messages and answers with them.
pub(super) async fn poll(
    state: &TransportState,
    token: &str,
    connection: Arc<HttpConnection>,
    timeout: Duration,
) -> Response {
    let (superseded, _receiving) = connection.begin_receiving();
    if connection.end_delivered() {
        state.connections.release(token);
        return terminated();
    }
    let mut batch = Vec::new();
    let next = tokio::select! {
        _ = superseded.cancelled() => return terminated(),
        next = tokio::time::timeout(timeout, connection.outbound.next_batch(&mut batch)) => next,
    };
    match next {
        Err(_quiet) => uncached(StatusCode::OK, OCTET_STREAM, Body::empty()),
        Ok(Next::Write) => uncached(StatusCode::OK, OCTET_STREAM, Body::from(batch.concat())),
        Ok(Next::Superseded) => terminated(),
        Ok(Next::End(ending)) => {
            batch.extend(ending.last);
            connection.mark_end_delivered();
            if batch.is_empty() {
                state.connections.release(token);
                return terminated();
            }
            uncached(StatusCode::OK, OCTET_STREAM, Body::from(batch.concat()))
        }
    }
}

/// 204: the connection is over; the client stops polling without reporting an error.
fn terminated() -> Response {
    uncached(StatusCode::NO_CONTENT, "text/plain", Body::empty())
}
