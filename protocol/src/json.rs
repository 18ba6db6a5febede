//! The `json` hub protocol: each message is one JSON object followed by 0x1E.
//!
//! Decoding reads the whole object in one pass into a record of optional properties, so `type`
//! may appear anywhere (the official JavaScript client writes it last) and unknown properties are
//! ignored. The field rules of each message type are then checked in [`decode`].

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::json_value::{JsonValue, JsonValues};
use crate::message::{Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, StreamItem};
use crate::{nesting, ProtocolError, Value, RECORD_SEPARATOR};

/// Every property any message type may carry; which ones are required depends on `type`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(rename = "type")]
    kind: Option<i64>,
    invocation_id: Option<String>,
    target: Option<String>,
    arguments: Option<Vec<Value>>,
    stream_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    item: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    error: Option<String>,
    allow_reconnect: Option<bool>,
    sequence_id: Option<u64>,
    headers: Option<Headers>,
}

/// Tells "present and null" (`Some(Nil)`) apart from "absent" (`None`, via `default`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Decodes one record (separator removed).
pub fn decode(record: &[u8]) -> Result<HubMessage, ProtocolError> {
    nesting::check(nesting::json_depth(record))?;
    let raw: Record = serde_json::from_slice(record).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let kind = raw.kind.ok_or(ProtocolError::MissingType)?;
    let kind =
        u8::try_from(kind).ok().filter(|k| (1..=9).contains(k)).ok_or(ProtocolError::UnknownMessageType(kind))?;
    match kind {
        1 => invocation(raw, 1, false).map(HubMessage::Invocation),
        2 => stream_item(raw),
        3 => completion(raw),
        4 => invocation(raw, 4, true).map(HubMessage::StreamInvocation),
        5 => Ok(HubMessage::CancelInvocation {
            invocation_id: required(raw.invocation_id, 5, "invocationId")?,
            headers: raw.headers.unwrap_or_default(),
        }),
        6 => Ok(HubMessage::Ping),
        7 => Ok(HubMessage::Close(Close { error: raw.error, allow_reconnect: raw.allow_reconnect.unwrap_or(false) })),
        8 => Ok(HubMessage::Ack { sequence_id: required(raw.sequence_id, 8, "sequenceId")? }),
        _ => Ok(HubMessage::Sequence { sequence_id: required(raw.sequence_id, 9, "sequenceId")? }),
    }
}

fn required<T>(value: Option<T>, message_type: u8, property: &'static str) -> Result<T, ProtocolError> {
    value.ok_or(ProtocolError::MissingProperty { message_type, property })
}

fn non_empty_id(id: Option<String>) -> Result<Option<String>, ProtocolError> {
    match id {
        Some(id) if id.is_empty() => {
            Err(ProtocolError::InvalidProperty { property: "invocationId", reason: "must not be empty" })
        }
        other => Ok(other),
    }
}

fn invocation(raw: Record, kind: u8, id_required: bool) -> Result<Invocation, ProtocolError> {
    let invocation_id = non_empty_id(raw.invocation_id)?;
    if id_required && invocation_id.is_none() {
        return Err(ProtocolError::MissingProperty { message_type: kind, property: "invocationId" });
    }
    let target = required(raw.target, kind, "target")?;
    if target.is_empty() {
        return Err(ProtocolError::InvalidProperty { property: "target", reason: "must not be empty" });
    }
    Ok(Invocation {
        headers: raw.headers.unwrap_or_default(),
        invocation_id,
        target,
        arguments: required(raw.arguments, kind, "arguments")?,
        stream_ids: raw.stream_ids.unwrap_or_default(),
    })
}

fn stream_item(raw: Record) -> Result<HubMessage, ProtocolError> {
    Ok(HubMessage::StreamItem(StreamItem {
        headers: raw.headers.unwrap_or_default(),
        invocation_id: required(raw.invocation_id, 2, "invocationId")?,
        item: required(raw.item, 2, "item")?,
    }))
}

fn completion(raw: Record) -> Result<HubMessage, ProtocolError> {
    let outcome = match (raw.result, raw.error) {
        (Some(_), Some(_)) => {
            return Err(ProtocolError::InvalidProperty {
                property: "error",
                reason: "The 'error' and 'result' properties are mutually exclusive.",
            })
        }
        (Some(result), None) => CompletionOutcome::Value(result),
        (None, Some(error)) => CompletionOutcome::Error(error),
        (None, None) => CompletionOutcome::Void,
    };
    Ok(HubMessage::Completion(Completion {
        headers: raw.headers.unwrap_or_default(),
        invocation_id: required(raw.invocation_id, 3, "invocationId")?,
        outcome,
    }))
}

/// The properties written for one message; absent ones are skipped.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<JsonValues<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_ids: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<JsonValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<JsonValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_reconnect: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<&'a Headers>,
}

fn headers(headers: &Headers) -> Option<&Headers> {
    (!headers.is_empty()).then_some(headers)
}

fn invocation_out(kind: u8, invocation: &Invocation) -> Out<'_> {
    Out {
        kind,
        invocation_id: invocation.invocation_id.as_deref(),
        target: Some(&invocation.target),
        arguments: Some(JsonValues(&invocation.arguments)),
        stream_ids: (!invocation.stream_ids.is_empty()).then_some(&invocation.stream_ids[..]),
        headers: headers(&invocation.headers),
        ..Out::default()
    }
}

fn completion_out(completion: &Completion) -> Out<'_> {
    let mut out = Out {
        kind: 3,
        invocation_id: Some(&completion.invocation_id),
        headers: headers(&completion.headers),
        ..Out::default()
    };
    match &completion.outcome {
        CompletionOutcome::Void => {}
        CompletionOutcome::Value(value) => out.result = Some(JsonValue(value)),
        CompletionOutcome::Error(error) => out.error = Some(error),
    }
    out
}

/// Encodes one message followed by the record separator.
pub fn encode(message: &HubMessage) -> Result<Bytes, ProtocolError> {
    nesting::check(nesting::message_depth(message))?;
    let out = match message {
        HubMessage::Invocation(invocation) => invocation_out(1, invocation),
        HubMessage::StreamInvocation(invocation) => invocation_out(4, invocation),
        HubMessage::StreamItem(item) => Out {
            kind: 2,
            invocation_id: Some(&item.invocation_id),
            item: Some(JsonValue(&item.item)),
            headers: headers(&item.headers),
            ..Out::default()
        },
        HubMessage::Completion(completion) => completion_out(completion),
        HubMessage::CancelInvocation { invocation_id, headers: h } => {
            Out { kind: 5, invocation_id: Some(invocation_id), headers: headers(h), ..Out::default() }
        }
        HubMessage::Ping => Out { kind: 6, ..Out::default() },
        HubMessage::Close(close) => Out {
            kind: 7,
            error: close.error.as_deref(),
            allow_reconnect: close.allow_reconnect.then_some(true),
            ..Out::default()
        },
        HubMessage::Ack { sequence_id } => Out { kind: 8, sequence_id: Some(*sequence_id), ..Out::default() },
        HubMessage::Sequence { sequence_id } => Out { kind: 9, sequence_id: Some(*sequence_id), ..Out::default() },
    };
    let mut bytes = serde_json::to_vec(&out).map_err(|e| ProtocolError::Value(e.to_string()))?;
    bytes.push(RECORD_SEPARATOR);
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
