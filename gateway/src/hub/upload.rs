//! Client→server upload streams.
//!
//! A client replaces each stream argument of an invocation by a stream id, then sends the
//! values as StreamItems and ends with a Completion. The session feeds those into a bounded
//! channel per stream; the method reads them as an [`UploadStream`]. The bound (10 items, as
//! the official server's `StreamBufferCapacity`) makes the session's reader wait for a method
//! that reads slowly, instead of buffering without limit.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use protocol::value::from_value;
use protocol::Value;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::debug;

use super::HubError;

/// Items an upload stream buffers before the sender has to wait.
pub(crate) const UPLOAD_BUFFER: usize = 10;

/// What the session hands to an upload stream: a value, or the error text the client ended
/// the stream with.
pub(crate) type UploadItem = Result<Value, String>;

/// The sending half, kept by the session under the stream id.
pub(crate) type UploadSender = mpsc::Sender<UploadItem>;

/// The receiving half of one upload stream, before it is typed.
pub struct UploadReceiver(mpsc::Receiver<UploadItem>);

impl fmt::Debug for UploadReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadReceiver")
    }
}

/// Opens the channel of one upload stream.
pub(crate) fn upload_channel() -> (UploadSender, UploadReceiver) {
    let (sender, receiver) = mpsc::channel(UPLOAD_BUFFER);
    (sender, UploadReceiver(receiver))
}

/// A stream the client uploads while the method runs; a hub method takes it as one of its
/// parameters (it is not counted among the invocation's `arguments`).
///
/// Yields each item converted to `T`. It ends when the client completes the stream, or with
/// one `Err` when the client completes it with an error (a [`HubError::Hub`] carrying the
/// client's text, so `?` reports it as `HubException: <text>`) or sends an item that is not a
/// `T`. Once the method returns, items the client still sends are ignored.
pub struct UploadStream<T> {
    receiver: mpsc::Receiver<UploadItem>,
    _item: PhantomData<fn() -> T>,
}

impl<T> UploadStream<T> {
    pub(crate) fn new(receiver: UploadReceiver) -> Self {
        Self { receiver: receiver.0, _item: PhantomData }
    }

    /// Ends the stream after an error: later items are refused rather than buffered.
    fn end(&mut self) {
        self.receiver.close();
        while let Ok(_discarded) = self.receiver.try_recv() {}
    }
}

impl<T> fmt::Debug for UploadStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadStream")
    }
}

impl<T: DeserializeOwned> Stream for UploadStream<T> {
    type Item = Result<T, HubError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match this.receiver.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(item)) => item,
        };
        let converted = item.map_err(HubError::Hub).and_then(|value| {
            from_value(value).map_err(|error| {
                debug!(%error, "upload stream item does not fit the parameter");
                HubError::internal("Failed to bind Stream message.")
            })
        });
        if converted.is_err() {
            this.end();
        }
        Poll::Ready(Some(converted))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn items_arrive_typed_then_the_stream_ends() {
        let (sender, receiver) = upload_channel();
        let mut stream = UploadStream::<i64>::new(receiver);
        sender.send(Ok(Value::from(1))).await.unwrap();
        sender.send(Ok(Value::from(2))).await.unwrap();
        drop(sender);
        let items: Vec<i64> = stream.by_ref().map(Result::unwrap).collect().await;
        assert_eq!(items, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_client_error_is_a_hub_error_and_ends_the_stream() {
        let (sender, receiver) = upload_channel();
        let mut stream = UploadStream::<i64>::new(receiver);
        sender.send(Err("Something bad".into())).await.unwrap();
        assert!(matches!(stream.next().await, Some(Err(HubError::Hub(text))) if text == "Something bad"));
        assert!(sender.send(Ok(Value::from(1))).await.is_err(), "later items are refused");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn an_item_of_the_wrong_type_fails_the_stream() {
        let (sender, receiver) = upload_channel();
        let mut stream = UploadStream::<i64>::new(receiver);
        sender.send(Ok(Value::from("not a number"))).await.unwrap();
        assert!(matches!(stream.next().await, Some(Err(HubError::Internal(_)))));
        assert!(stream.next().await.is_none());
    }
}
