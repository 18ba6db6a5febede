//! The `messagepack` hub protocol: each message is a MessagePack array whose first element is
//! the message type, framed by a length prefix (see [`crate::framing::BinaryFramer`]).
//!
//! Readers are lenient where the official clients differ (an Invocation with or without its
//! stream-id array, a Close with or without `allowReconnect`, any integer width); writers
//! produce the layouts the official server writes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::framing::write_length_prefix;
use crate::message::{Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, StreamItem};
use crate::{nesting, ProtocolError, Value};

const ERROR_RESULT: u64 = 1;
const VOID_RESULT: u64 = 2;
const VALUE_RESULT: u64 = 3;

/// Decodes one message body (length prefix removed).
pub fn decode(record: &[u8]) -> Result<HubMessage, ProtocolError> {
    let mut cursor = record;
    // Read with a recursion bound above the limit (rmpv spends two units of depth per array or
    // map level), then measured exactly.
    let value =
        rmpv::decode::read_value_with_max_depth(&mut cursor, 2 * nesting::MAX_DEPTH + 8).map_err(|e| match e {
            rmpv::decode::Error::DepthLimitExceeded => ProtocolError::TooDeep { limit: nesting::MAX_DEPTH },
            other => ProtocolError::Malformed(other.to_string()),
        })?;
    nesting::check(nesting::value_depth(&value, nesting::MAX_DEPTH + 1))?;
    if !cursor.is_empty() {
        return Err(ProtocolError::Malformed("bytes after the message".into()));
    }
    let Value::Array(items) = value else {
        return Err(ProtocolError::Malformed("a message must be an array".into()));
    };
    let mut fields = Fields { items: items.into_iter(), kind: 0 };
    let kind = fields.next_int("type")?;
    fields.kind = u8::try_from(kind)
        .ok()
        .filter(|k| (1..=9).contains(k))
        .ok_or(ProtocolError::UnknownMessageType(i64::try_from(kind).unwrap_or(i64::MAX)))?;
    match fields.kind {
        1 => invocation(&mut fields, false).map(HubMessage::Invocation),
        2 => Ok(HubMessage::StreamItem(StreamItem {
            headers: fields.headers()?,
            invocation_id: fields.string("invocationId")?,
            item: text_strings(fields.value("item")?),
        })),
        3 => completion(&mut fields),
        4 => invocation(&mut fields, true).map(HubMessage::StreamInvocation),
        5 => Ok(HubMessage::CancelInvocation {
            headers: fields.headers()?,
            invocation_id: fields.string("invocationId")?,
        }),
        6 => Ok(HubMessage::Ping),
        7 => close(&mut fields),
        8 => Ok(HubMessage::Ack { sequence_id: fields.next_int("sequenceId")? }),
        _ => Ok(HubMessage::Sequence { sequence_id: fields.next_int("sequenceId")? }),
    }
}

/// The elements of one message array, read in order.
struct Fields {
    items: std::vec::IntoIter<Value>,
    kind: u8,
}

impl Fields {
    fn value(&mut self, property: &'static str) -> Result<Value, ProtocolError> {
        self.items.next().ok_or(ProtocolError::MissingProperty { message_type: self.kind, property })
    }

    fn next_int(&mut self, property: &'static str) -> Result<u64, ProtocolError> {
        let value = self.value(property)?;
        value.as_u64().ok_or(ProtocolError::InvalidProperty { property, reason: "must be a non-negative integer" })
    }

    fn string(&mut self, property: &'static str) -> Result<String, ProtocolError> {
        match self.value(property)? {
            Value::String(s) => {
                s.into_str().ok_or(ProtocolError::InvalidProperty { property, reason: "invalid UTF-8" })
            }
            _ => Err(ProtocolError::InvalidProperty { property, reason: "must be a string" }),
        }
    }

    /// An invocation id where nil or "" means "none" (fire and forget).
    fn optional_id(&mut self) -> Result<Option<String>, ProtocolError> {
        match self.value("invocationId")? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(s.into_str().filter(|s| !s.is_empty())),
            _ => Err(ProtocolError::InvalidProperty { property: "invocationId", reason: "must be a string or nil" }),
        }
    }

    fn headers(&mut self) -> Result<Headers, ProtocolError> {
        let invalid = ProtocolError::InvalidProperty { property: "headers", reason: "must be a map of strings" };
        let Value::Map(pairs) = self.value("headers")? else { return Err(invalid) };
        pairs
            .into_iter()
            .map(|(k, v)| match (k, v) {
                (Value::String(k), Value::String(v)) => {
                    Ok((k.into_str().unwrap_or_default(), v.into_str().unwrap_or_default()))
                }
                _ => Err(invalid.clone()),
            })
            .collect()
    }

    fn array(&mut self, property: &'static str) -> Result<Vec<Value>, ProtocolError> {
        match self.value(property)? {
            Value::Array(values) => Ok(values),
            _ => Err(ProtocolError::InvalidProperty { property, reason: "must be an array" }),
        }
    }
}

fn invocation(fields: &mut Fields, id_required: bool) -> Result<Invocation, ProtocolError> {
    let headers = fields.headers()?;
    let invocation_id = fields.optional_id()?;
    if id_required && invocation_id.is_none() {
        return Err(ProtocolError::MissingProperty { message_type: fields.kind, property: "invocationId" });
    }
    let target = fields.string("target")?;
    if target.is_empty() {
        return Err(ProtocolError::InvalidProperty { property: "target", reason: "must not be empty" });
    }
    let mut arguments = fields.array("arguments")?;
    arguments.iter_mut().for_each(repair_strings);
    // The JavaScript client leaves the stream ids out when there are none.
    let stream_ids = match fields.items.next() {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::Array(ids)) => ids.into_iter().filter_map(|id| id.as_str().map(str::to_owned)).collect(),
        Some(_) => return Err(ProtocolError::InvalidProperty { property: "streamIds", reason: "must be an array" }),
    };
    Ok(Invocation { headers, invocation_id, target, arguments, stream_ids })
}

fn completion(fields: &mut Fields) -> Result<HubMessage, ProtocolError> {
    let headers = fields.headers()?;
    let invocation_id = fields.string("invocationId")?;
    let outcome = match fields.next_int("resultKind")? {
        ERROR_RESULT => CompletionOutcome::Error(fields.string("error")?),
        VOID_RESULT => CompletionOutcome::Void,
        VALUE_RESULT => CompletionOutcome::Value(text_strings(fields.value("result")?)),
        _ => return Err(ProtocolError::InvalidProperty { property: "resultKind", reason: "must be 1, 2 or 3" }),
    };
    Ok(HubMessage::Completion(Completion { headers, invocation_id, outcome }))
}

fn close(fields: &mut Fields) -> Result<HubMessage, ProtocolError> {
    let error = match fields.value("error")? {
        Value::Nil => None,
        Value::String(s) => s.into_str(),
        _ => return Err(ProtocolError::InvalidProperty { property: "error", reason: "must be a string or nil" }),
    };
    let allow_reconnect = matches!(fields.items.next(), Some(Value::Boolean(true)));
    Ok(HubMessage::Close(Close { error, allow_reconnect }))
}

/// `value` with every string that is not UTF-8 made text, U+FFFD in place of each bad sequence.
fn text_strings(mut value: Value) -> Value {
    repair_strings(&mut value);
    value
}

/// Replaces every string in `value` that is not UTF-8 by its lossy text, as the official
/// server's reader does. Kept as they came, rmpv would write them back as binary: a relayed
/// string would reach other clients as bytes (found by the `msgpack_roundtrip` fuzz target).
/// Runs after the depth check, so the recursion is bounded.
fn repair_strings(value: &mut Value) {
    match value {
        Value::String(text) if text.as_str().is_none() => {
            *value = Value::from(String::from_utf8_lossy(text.as_bytes()).into_owned());
        }
        Value::Array(items) => items.iter_mut().for_each(repair_strings),
        Value::Map(entries) => entries.iter_mut().for_each(|(key, item)| {
            repair_strings(key);
            repair_strings(item);
        }),
        _ => {}
    }
}

fn headers_value(headers: &Headers) -> Value {
    Value::Map(headers.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect())
}

fn id_value(id: Option<&str>) -> Value {
    id.map_or(Value::Nil, Value::from)
}

fn invocation_value(kind: u64, invocation: &Invocation) -> Value {
    Value::Array(vec![
        Value::from(kind),
        headers_value(&invocation.headers),
        id_value(invocation.invocation_id.as_deref()),
        Value::from(invocation.target.as_str()),
        Value::Array(invocation.arguments.clone()),
        Value::Array(invocation.stream_ids.iter().map(|id| Value::from(id.as_str())).collect()),
    ])
}

fn completion_value(completion: &Completion) -> Value {
    let mut items =
        vec![Value::from(3), headers_value(&completion.headers), Value::from(completion.invocation_id.as_str())];
    match &completion.outcome {
        CompletionOutcome::Error(error) => items.extend([Value::from(ERROR_RESULT), Value::from(error.as_str())]),
        CompletionOutcome::Void => items.push(Value::from(VOID_RESULT)),
        CompletionOutcome::Value(value) => items.extend([Value::from(VALUE_RESULT), value.clone()]),
    }
    Value::Array(items)
}

fn message_value(message: &HubMessage) -> Value {
    match message {
        HubMessage::Invocation(invocation) => invocation_value(1, invocation),
        HubMessage::StreamInvocation(invocation) => invocation_value(4, invocation),
        HubMessage::StreamItem(item) => Value::Array(vec![
            Value::from(2),
            headers_value(&item.headers),
            Value::from(item.invocation_id.as_str()),
            item.item.clone(),
        ]),
        HubMessage::Completion(completion) => completion_value(completion),
        HubMessage::CancelInvocation { invocation_id, headers } => {
            Value::Array(vec![Value::from(5), headers_value(headers), Value::from(invocation_id.as_str())])
        }
        HubMessage::Ping => Value::Array(vec![Value::from(6)]),
        HubMessage::Close(close) => Value::Array(vec![
            Value::from(7),
            close.error.as_deref().map_or(Value::Nil, Value::from),
            Value::Boolean(close.allow_reconnect),
        ]),
        HubMessage::Ack { sequence_id } => Value::Array(vec![Value::from(8), Value::from(*sequence_id)]),
        HubMessage::Sequence { sequence_id } => Value::Array(vec![Value::from(9), Value::from(*sequence_id)]),
    }
}

/// Encodes one message with its length prefix.
pub fn encode(message: &HubMessage) -> Result<Bytes, ProtocolError> {
    nesting::check(nesting::message_depth(message))?;
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &message_value(message)).map_err(|e| ProtocolError::Value(e.to_string()))?;
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    write_length_prefix(&mut framed, body.len())?;
    framed.put_slice(&body);
    Ok(framed.freeze())
}

#[cfg(test)]
#[path = "msgpack_tests.rs"]
mod tests;
