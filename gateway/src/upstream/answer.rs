//! What a backend's answer to an invocation means for the client, as Azure SignalR Service
//! reads it: a 200 body is one framed Completion in the client's protocol, for that very
//! invocation, and is passed on; 200 without a body or 204 completes without a result; any
//! other status, and a call that never got an answer, completes with an error naming why.

use protocol::{CompletionOutcome, HubMessage, Protocol};

/// How an upstream call ended, before it is turned into the client's Completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The backend answered with this status and body.
    Answered { status: u16, body: Vec<u8> },
    /// No answer within the rule's timeout.
    TimedOut,
    /// The backend could not be reached (refused, reset, name not found, TLS failure).
    Unreachable(String),
    /// The answer's body was larger than `--upstream-max-body`.
    TooLarge { limit: usize },
    /// Not sent: the node has `--upstream-max-in-flight` calls running already.
    Busy,
    /// Not sent: the rule's backend failed repeatedly and its circuit is open.
    CircuitOpen,
}

/// The outcome the client's Completion for invocation `invocation_id` carries.
pub fn outcome(reply: Reply, protocol: Protocol, invocation_id: &str) -> CompletionOutcome {
    match reply {
        Reply::Answered { status: 200, body } if body.is_empty() => CompletionOutcome::Void,
        Reply::Answered { status: 204, .. } => CompletionOutcome::Void,
        Reply::Answered { status: 200, body } => passed_on(&body, protocol, invocation_id),
        Reply::Answered { status, .. } => failed(format!("Invocation failed, status code {status}")),
        Reply::TimedOut => failed("Invocation failed, the upstream did not answer in time".into()),
        Reply::Unreachable(reason) => failed(format!("Invocation failed, the upstream is unreachable: {reason}")),
        Reply::TooLarge { limit } => {
            failed(format!("Invocation failed, the upstream's answer is larger than {limit} bytes"))
        }
        Reply::Busy => failed("Invocation failed, too many upstream calls are in flight; retry later".into()),
        Reply::CircuitOpen => failed("Invocation failed, the upstream is failing and calls to it are paused".into()),
    }
}

/// The Completion in a 200 body, if it is exactly one Completion for `invocation_id`.
fn passed_on(body: &[u8], protocol: Protocol, invocation_id: &str) -> CompletionOutcome {
    let mut framer = protocol.framer(body.len(), body.into());
    let not_framed = || failed("Invocation failed, the upstream's answer is not a framed message".into());
    let Ok(Some(record)) = framer.next_record() else { return not_framed() };
    match framer.next_record() {
        Ok(None) if !framer.has_partial_record() => {}
        Ok(Some(_)) => return failed("Invocation failed, the upstream's answer holds more than one message".into()),
        _ => return not_framed(),
    }
    match protocol.decode(&record) {
        Ok(HubMessage::Completion(completion)) if completion.invocation_id == invocation_id => completion.outcome,
        Ok(HubMessage::Completion(_)) => {
            failed("Invocation failed, the upstream answered for another invocation".into())
        }
        Ok(_) => failed("Invocation failed, the upstream's answer is not a Completion".into()),
        Err(_) => failed("Invocation failed, the upstream's answer cannot be read".into()),
    }
}

fn failed(text: String) -> CompletionOutcome {
    CompletionOutcome::Error(text)
}

#[cfg(test)]
mod tests {
    use protocol::{Completion, Value};

    use super::*;

    fn answered(status: u16, body: Vec<u8>) -> Reply {
        Reply::Answered { status, body }
    }

    fn completion(protocol: Protocol, id: &str, outcome: CompletionOutcome) -> Vec<u8> {
        protocol.encode(&HubMessage::Completion(Completion::new(id, outcome))).expect("encode").to_vec()
    }

    #[test]
    fn a_completion_for_the_invocation_is_passed_on_in_either_protocol() {
        for protocol in Protocol::ALL {
            let value = CompletionOutcome::Value(Value::from("stored"));
            assert_eq!(outcome(answered(200, completion(protocol, "7", value.clone())), protocol, "7"), value);
            let error = CompletionOutcome::Error("rejected".into());
            assert_eq!(outcome(answered(200, completion(protocol, "7", error.clone())), protocol, "7"), error);
        }
    }

    #[test]
    fn an_empty_answer_completes_without_a_result() {
        assert_eq!(outcome(answered(200, Vec::new()), Protocol::Json, "1"), CompletionOutcome::Void);
        assert_eq!(outcome(answered(204, b"ignored".to_vec()), Protocol::Json, "1"), CompletionOutcome::Void);
    }

    #[test]
    fn other_statuses_and_missing_answers_fail_with_the_reason() {
        let error = |reply| match outcome(reply, Protocol::Json, "1") {
            CompletionOutcome::Error(text) => text,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(error(answered(500, Vec::new())), "Invocation failed, status code 500");
        assert_eq!(error(answered(201, Vec::new())), "Invocation failed, status code 201");
        assert!(error(Reply::TimedOut).contains("did not answer in time"));
        assert!(error(Reply::Unreachable("connection refused".into())).ends_with("unreachable: connection refused"));
        assert!(error(Reply::TooLarge { limit: 1024 }).contains("larger than 1024 bytes"));
        assert!(error(Reply::Busy).contains("too many upstream calls"));
        assert!(error(Reply::CircuitOpen).contains("paused"));
    }

    #[test]
    fn a_200_body_that_is_not_this_invocations_completion_fails() {
        let error = |body: Vec<u8>, protocol| match outcome(answered(200, body), protocol, "1") {
            CompletionOutcome::Error(text) => text,
            other => panic!("expected an error, got {other:?}"),
        };
        let other = completion(Protocol::Json, "2", CompletionOutcome::Void);
        assert!(error(other.clone(), Protocol::Json).contains("another invocation"));
        let mut two = completion(Protocol::Json, "1", CompletionOutcome::Void);
        two.extend(other);
        assert!(error(two, Protocol::Json).contains("more than one message"));
        assert!(error(b"{\"type\":6}\x1e".to_vec(), Protocol::Json).contains("not a Completion"));
        assert!(error(b"plain text".to_vec(), Protocol::Json).contains("not a framed message"));
        let json_in_msgpack = completion(Protocol::Json, "1", CompletionOutcome::Void);
        assert!(error(json_in_msgpack, Protocol::MessagePack).starts_with("Invocation failed"));
    }
}
