//! What every raw test client can do once it can send a message and receive the next one:
//! invoke and await Completions, wait for particular messages, answer client results. The
//! WebSocket client and the HTTP-transport client share it.

use std::collections::VecDeque;

use protocol::{Close, Completion, CompletionOutcome, HubMessage, Invocation, Value};

#[allow(async_fn_in_trait)] // test support, never used across threads as a trait object
pub trait Conversation {
    /// Messages received but not consumed yet by an expectation.
    fn pending(&mut self) -> &mut VecDeque<HubMessage>;

    /// The next message from the server, ignoring `pending`; `None` once the connection ended.
    async fn receive(&mut self) -> Option<HubMessage>;

    async fn send(&mut self, message: &HubMessage);

    /// A fresh invocation id.
    fn new_invocation_id(&mut self) -> String;

    /// The next hub message, or `None` when the connection closed.
    async fn next_message(&mut self) -> Option<HubMessage> {
        match self.pending().pop_front() {
            Some(message) => Some(message),
            None => self.receive().await,
        }
    }

    /// Takes the oldest message received but not yet consumed, without waiting.
    fn take_pending(&mut self) -> Option<HubMessage> {
        self.pending().pop_front()
    }

    /// Waits for the first message matching `pick`, keeping the others for later.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&HubMessage) -> Option<T>) -> T {
        if let Some(found) = self.pending().iter().position(|m| pick(m).is_some()) {
            let message = self.pending().remove(found).expect("present");
            return pick(&message).expect("matched");
        }
        loop {
            let message = self.receive().await.unwrap_or_else(|| panic!("connection closed while waiting for {what}"));
            match pick(&message) {
                Some(found) => return found,
                None => self.pending().push_back(message),
            }
        }
    }

    /// Invokes a hub method and returns its Completion.
    async fn invoke(&mut self, target: &str, arguments: Vec<Value>) -> Completion {
        let id = self.start_invocation(target, arguments).await;
        self.expect_completion(&id).await
    }

    /// Sends an invocation with a fresh id without waiting for its Completion; returns the id.
    async fn start_invocation(&mut self, target: &str, arguments: Vec<Value>) -> String {
        let id = self.new_invocation_id();
        let invocation =
            Invocation { invocation_id: Some(id.clone()), target: target.into(), arguments, ..Invocation::default() };
        self.send(&HubMessage::Invocation(invocation)).await;
        id
    }

    /// Waits for the Completion of the invocation `id`.
    async fn expect_completion(&mut self, id: &str) -> Completion {
        self.expect(&format!("completion {id}"), |m| match m {
            HubMessage::Completion(c) if c.invocation_id == id => Some(c.clone()),
            _ => None,
        })
        .await
    }

    /// Answers a server-to-client invocation (a client result) with `outcome`.
    async fn answer(&mut self, invocation: &Invocation, outcome: CompletionOutcome) {
        let id = invocation.invocation_id.clone().expect("the server awaits a result: the invocation has an id");
        self.send(&HubMessage::Completion(Completion::new(id, outcome))).await;
    }

    /// Invokes and returns the result value; panics on error or void.
    async fn invoke_value(&mut self, target: &str, arguments: Vec<Value>) -> Value {
        match self.invoke(target, arguments).await.outcome {
            CompletionOutcome::Value(value) => value,
            other => panic!("{target}: expected a value, got {other:?}"),
        }
    }

    /// Invokes and asserts a void completion.
    async fn invoke_void(&mut self, target: &str, arguments: Vec<Value>) {
        let outcome = self.invoke(target, arguments).await.outcome;
        assert_eq!(outcome, CompletionOutcome::Void, "{target}");
    }

    /// Invokes and returns the error text; panics on success.
    async fn invoke_error(&mut self, target: &str, arguments: Vec<Value>) -> String {
        match self.invoke(target, arguments).await.outcome {
            CompletionOutcome::Error(text) => text,
            other => panic!("{target}: expected an error, got {other:?}"),
        }
    }

    /// Sends without an invocation id (fire and forget).
    async fn send_invocation(&mut self, target: &str, arguments: Vec<Value>) {
        self.send(&HubMessage::Invocation(Invocation::call(target, arguments))).await;
    }

    /// Waits for a server-to-client invocation of `target`.
    async fn expect_invocation(&mut self, target: &str) -> Invocation {
        self.expect(&format!("invocation of {target}"), |m| match m {
            HubMessage::Invocation(i) if i.target == target => Some(i.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the server's Close message.
    async fn expect_close(&mut self) -> Close {
        self.expect("a Close message", |m| match m {
            HubMessage::Close(close) => Some(close.clone()),
            _ => None,
        })
        .await
    }

    /// Asserts that no invocation of `target` is queued once a round trip has completed: the
    /// server handles one connection's messages in order, so anything sent to this client
    /// before the round trip's reply is already here.
    async fn assert_no_invocation(&mut self, target: &str) {
        // Any invocation with an id is a round trip; an unknown method answers with an error.
        self.invoke("RoundTripBarrier", vec![]).await;
        let queued = self.pending().iter().any(|m| matches!(m, HubMessage::Invocation(i) if i.target == target));
        assert!(!queued, "unexpected invocation of {target}");
    }

    /// Waits until the server ends the connection; returns the Close message if one came.
    async fn closed(&mut self) -> Option<Close> {
        let mut close = None;
        while let Some(message) = self.next_message().await {
            if let HubMessage::Close(c) = message {
                close = Some(c);
            }
        }
        close
    }
}
