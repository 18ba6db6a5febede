//! The long-polling transport: a loop of `GET {hub}?id=…` (200 with data, 200 empty = poll
//! again, 204 = the server closed), a `POST` per send, `DELETE` to stop. MessagePack bodies
//! are binary (`application/octet-stream`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, Url};

use super::http::{authorized, client, transport_error};
use super::negotiate::Negotiated;
use super::sse::post;
use super::ClientError;
use crate::signalr::http::with_query;

/// A poll the server has not answered in this long is abandoned and sent again (the server
/// answers empty after 90 s; the JS client waits 100 s).
const POLL_TIMEOUT: Duration = Duration::from_secs(100);

/// What one poll returned.
enum Poll {
    Data(Bytes),
    Empty,
    Closed,
}

type PollFuture = Pin<Box<dyn Future<Output = Result<Poll, ClientError>> + Send>>;

pub(super) struct LongPolling {
    /// `{hub}?id=…`.
    url: Url,
    access_token: Option<String>,
    binary: bool,
    /// The poll in flight, kept across `recv` calls so a cancelled `recv` loses nothing.
    poll: Option<PollFuture>,
}

impl std::fmt::Debug for LongPolling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPolling").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

impl LongPolling {
    /// Sends the first poll, which the server answers at once with 200 and no body.
    pub async fn connect(negotiated: Negotiated, binary: bool) -> Result<Self, ClientError> {
        let url = with_query(&negotiated.url, &[("id", negotiated.id.as_deref())]);
        match poll(url.clone(), negotiated.access_token.clone()).await? {
            Poll::Closed => Err(ClientError::Transport("long polling: closed on the first poll".into())),
            Poll::Data(_) | Poll::Empty => Ok(Self { url, access_token: negotiated.access_token, binary, poll: None }),
        }
    }

    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let (url, token) = (self.url.clone(), self.access_token.clone());
            let in_flight = self.poll.get_or_insert_with(|| Box::pin(poll(url, token)));
            let result = in_flight.await;
            self.poll = None;
            match result? {
                Poll::Data(data) => return Ok(Some(data)),
                Poll::Empty => continue,
                Poll::Closed => return Ok(None),
            }
        }
    }

    pub async fn send(&mut self, data: Bytes) -> Result<(), ClientError> {
        let content_type = if self.binary { "application/octet-stream" } else { "text/plain;charset=UTF-8" };
        post(&self.url, self.access_token.as_deref(), data, content_type).await
    }

    pub async fn send_text(&mut self, data: Bytes) -> Result<(), ClientError> {
        post(&self.url, self.access_token.as_deref(), data, "text/plain;charset=UTF-8").await
    }

    /// Sends `close` (if any), drops the poll in flight and DELETEs the connection.
    pub async fn close(mut self, close: Option<Bytes>) {
        if let Some(close) = close {
            let _ = self.send(close).await;
        }
        self.poll = None;
        let request = authorized(client().delete(self.url.clone()), self.access_token.as_deref());
        let _ = request.send().await;
    }
}

async fn poll(url: Url, token: Option<String>) -> Result<Poll, ClientError> {
    let request = authorized(client().get(url), token.as_deref()).timeout(POLL_TIMEOUT);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return Ok(Poll::Empty),
        Err(error) => return Err(transport_error("long polling: poll")(error)),
    };
    match response.status() {
        StatusCode::NO_CONTENT => Ok(Poll::Closed),
        StatusCode::OK => {
            let body = response.bytes().await.map_err(transport_error("long polling: body"))?;
            Ok(if body.is_empty() { Poll::Empty } else { Poll::Data(body) })
        }
        status => Err(ClientError::Transport(format!("long polling: poll status {}", status.as_u16()))),
    }
}
