//! What one connection has running in the background: server→client streams (by invocation
//! id) and client→server upload streams (by stream id).
//!
//! Most connections never stream, so this state is created on the connection's first
//! invocation and lives in one box; an idle connection pays one pointer. Everything is
//! bounded: running streams plus open uploads may not exceed a per-connection limit. Entries
//! of finished calls are recognised by their cancelled token and pruned lazily, so calls never
//! reach back into the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::{HubMessage, Protocol};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::hub::dispatch::{StreamSendError, StreamSink};
use crate::hub::upload::{upload_channel, UploadSender};
use crate::hub::UploadReceiver;
use crate::queue::outbound::Outbound;

/// Why a stream or upload was not started.
#[derive(Debug, Error, PartialEq)]
pub(crate) enum Refusal {
    #[error("Invocation ID '{0}' is already in use.")]
    IdInUse(String),
    #[error("Too many streams are running on this connection (at most {0}).")]
    TooMany(usize),
}

/// One upload stream the client may still feed.
struct OpenUpload {
    /// `None` once the client completed the stream.
    sender: Option<UploadSender>,
    /// Cancelled once the method reading the stream finished.
    method_done: CancellationToken,
}

/// The upload streams handed to one call, and the token that closes them.
pub(crate) struct Uploads {
    pub receivers: Vec<UploadReceiver>,
    /// Cancel when the method finishes: its remaining upload streams close and later items
    /// are ignored.
    pub done: CancellationToken,
}

/// Background work of one connection.
pub(crate) struct Running {
    /// Cancelled when the connection ends; parent of every stream's token.
    connection: CancellationToken,
    /// Server→client streams; a token is cancelled by CancelInvocation, the connection's end,
    /// or the stream task itself once it finished.
    streams: HashMap<String, CancellationToken>,
    uploads: HashMap<String, OpenUpload>,
    limit: usize,
}

impl Running {
    /// Room for `limit` streams and uploads together.
    pub fn new(limit: usize) -> Box<Self> {
        Box::new(Self { connection: CancellationToken::new(), streams: HashMap::new(), uploads: HashMap::new(), limit })
    }

    /// Cancelled when the connection ends.
    pub fn connection_token(&self) -> CancellationToken {
        self.connection.clone()
    }

    /// Registers a server→client stream with its upload streams. The stream's token is both
    /// its cancellation and its "finished" mark: the stream task cancels it when done.
    pub fn start_stream(&mut self, id: &str, stream_ids: &[String]) -> Result<Uploads, Refusal> {
        self.prune();
        if self.streams.contains_key(id) {
            return Err(Refusal::IdInUse(id.to_owned()));
        }
        self.ensure_room(1 + stream_ids.len())?;
        let token = self.connection.child_token();
        self.streams.insert(id.to_owned(), token.clone());
        Ok(self.open(stream_ids, token))
    }

    /// Opens the upload streams of a non-streaming invocation.
    pub fn open_uploads(&mut self, stream_ids: &[String]) -> Result<Uploads, Refusal> {
        if stream_ids.is_empty() {
            return Ok(Uploads { receivers: Vec::new(), done: CancellationToken::new() });
        }
        self.prune();
        self.ensure_room(stream_ids.len())?;
        Ok(self.open(stream_ids, CancellationToken::new()))
    }

    /// The client cancelled a stream; unknown ids are ignored.
    pub fn cancel(&mut self, id: &str) {
        if let Some(token) = self.streams.remove(id) {
            token.cancel();
        }
    }

    /// Where the next item of an open upload stream goes.
    pub fn upload_sender(&self, stream_id: &str) -> Option<UploadSender> {
        self.open_upload(stream_id).and_then(|upload| upload.sender.clone())
    }

    /// The client completed an upload stream: takes its sender (dropping it ends the stream
    /// once the buffered items are read). `None` when no open stream has that id.
    pub fn complete_upload(&mut self, stream_id: &str) -> Option<UploadSender> {
        self.open_upload(stream_id)?;
        self.uploads.get_mut(stream_id).and_then(|upload| upload.sender.take())
    }

    /// The connection ended: cancels every stream and closes every upload.
    pub fn close(&self) {
        self.connection.cancel();
    }

    fn open_upload(&self, stream_id: &str) -> Option<&OpenUpload> {
        self.uploads.get(stream_id).filter(|upload| !upload.method_done.is_cancelled() && upload.sender.is_some())
    }

    fn open(&mut self, stream_ids: &[String], done: CancellationToken) -> Uploads {
        let receivers = stream_ids
            .iter()
            .map(|stream_id| {
                let (sender, receiver) = upload_channel();
                let upload = OpenUpload { sender: Some(sender), method_done: done.clone() };
                self.uploads.insert(stream_id.clone(), upload);
                receiver
            })
            .collect();
        Uploads { receivers, done }
    }

    fn ensure_room(&self, wanted: usize) -> Result<(), Refusal> {
        if self.streams.len() + self.uploads.len() + wanted > self.limit {
            return Err(Refusal::TooMany(self.limit));
        }
        Ok(())
    }

    /// Forgets streams that finished and uploads whose method finished. A completed upload
    /// stays counted until its method finishes, which bounds the methods reading uploads.
    fn prune(&mut self) {
        self.streams.retain(|_, token| !token.is_cancelled());
        self.uploads.retain(|_, upload| !upload.method_done.is_cancelled());
    }
}

/// How often a stream that waits for the client looks at the queue again.
const ROOM_POLL: Duration = Duration::from_millis(5);

/// Sends a stream's messages to the connection's outbound queue.
///
/// Fan-out never waits for a client and closes one that falls behind; a stream is different:
/// it produces as fast as it is polled, so it waits while the queue is over half full instead
/// of getting its own client disconnected as a slow consumer. It polls the queue's size rather
/// than being woken: a waker in every connection's queue would cost idle connections memory
/// for the few that stream.
pub(crate) struct OutboundSink {
    outbound: Arc<Outbound>,
    protocol: Protocol,
    /// Queue bytes above which the stream waits.
    high_water: usize,
}

impl OutboundSink {
    /// A sink for a connection whose queue holds `queue_limit` bytes.
    pub fn new(outbound: Arc<Outbound>, protocol: Protocol, queue_limit: usize) -> Self {
        Self { outbound, protocol, high_water: queue_limit / 2 }
    }

    async fn wait_for_room(&self) -> Result<(), StreamSendError> {
        while self.outbound.queued_bytes() > self.high_water {
            tokio::select! {
                _ = self.outbound.closed().cancelled() => return Err(StreamSendError::Closed),
                _ = tokio::time::sleep(ROOM_POLL) => {}
            }
        }
        Ok(())
    }
}

impl StreamSink for OutboundSink {
    async fn send(&mut self, message: HubMessage) -> Result<(), StreamSendError> {
        self.wait_for_room().await?;
        let bytes = self.protocol.encode(&message).map_err(|error| StreamSendError::Encode(error.to_string()))?;
        self.outbound.push(bytes).map_err(|_| StreamSendError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn a_running_stream_id_cannot_be_reused_until_it_finishes() {
        let mut running = Running::new(4);
        let first = running.start_stream("1", &[]).unwrap();
        assert_eq!(running.start_stream("1", &[]).err(), Some(Refusal::IdInUse("1".into())));
        first.done.cancel();
        assert!(running.start_stream("1", &[]).is_ok());
    }

    #[test]
    fn cancel_fires_the_stream_token_and_ignores_unknown_ids() {
        let mut running = Running::new(4);
        let stream = running.start_stream("1", &[]).unwrap();
        running.cancel("unknown");
        assert!(!stream.done.is_cancelled());
        running.cancel("1");
        assert!(stream.done.is_cancelled());
    }

    #[test]
    fn streams_and_uploads_share_the_limit() {
        let mut running = Running::new(3);
        let uploads = running.open_uploads(&ids(&["a", "b"])).unwrap();
        assert_eq!(running.start_stream("1", &[]).err(), None);
        assert_eq!(running.open_uploads(&ids(&["c"])).err(), Some(Refusal::TooMany(3)));
        uploads.done.cancel();
        assert!(running.open_uploads(&ids(&["c"])).is_ok(), "a finished method frees its uploads");
    }

    #[test]
    fn uploads_take_items_until_completed_or_their_method_finishes() {
        let mut running = Running::new(4);
        let uploads = running.open_uploads(&ids(&["a", "b"])).unwrap();
        assert!(running.upload_sender("a").is_some());
        assert!(running.complete_upload("a").is_some());
        assert!(running.upload_sender("a").is_none(), "completed");
        assert!(running.complete_upload("a").is_none(), "a second Completion is not an upload's");
        uploads.done.cancel();
        assert!(running.upload_sender("b").is_none(), "its method finished");
    }

    #[test]
    fn closing_the_connection_cancels_every_stream() {
        let mut running = Running::new(4);
        let stream = running.start_stream("1", &[]).unwrap();
        let connection = running.connection_token();
        running.close();
        assert!(connection.is_cancelled() && stream.done.is_cancelled());
    }
}
