//! The bound on how deeply a message may nest, the same for both protocols.
//!
//! Decoders and encoders recurse once per level of arrays and maps (and a value is dropped the
//! same way), so a small message of many nested one-element arrays could exhaust a task's stack
//! and abort the whole process. Every message is therefore measured before it is built from
//! bytes and before it is written: a message is one level, its arguments array another, and each
//! array, map or object inside a value one more. The official server's JSON reader has the same
//! limit by default (64).
//!
//! JSON text is measured by a linear scan of its bytes before it is parsed; MessagePack is read
//! with a recursion bound a little above the limit and then measured exactly, so neither path
//! ever recurses deeper than the limit allows.

use crate::message::{CompletionOutcome, HubMessage};
use crate::{ProtocolError, Value};

/// The deepest nesting a message may have, counting the message itself as one level.
pub const MAX_DEPTH: usize = 64;

/// Fails when `depth` exceeds [`MAX_DEPTH`].
pub(crate) fn check(depth: usize) -> Result<(), ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::TooDeep { limit: MAX_DEPTH });
    }
    Ok(())
}

/// The deepest nesting of brackets and braces in JSON text, strings excluded. Invalid JSON is
/// measured all the same; the parser that runs afterwards rejects it.
pub(crate) fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// How many levels of arrays and maps `value` has (a scalar has none). Stops counting once it
/// is past `limit`, so it never recurses more than `limit + 1` times. Allocates nothing: every
/// encode measures its message.
pub(crate) fn value_depth(value: &Value, limit: usize) -> usize {
    match value {
        Value::Array(items) => 1 + deepest(items.iter(), limit),
        Value::Map(entries) => 1 + deepest(entries.iter().flat_map(|(k, v)| [k, v]), limit),
        _ => 0,
    }
}

/// The deepest of `children`, counted up to `limit`.
fn deepest<'a>(children: impl Iterator<Item = &'a Value>, limit: usize) -> usize {
    let mut deepest = 0;
    if limit == 0 {
        return deepest;
    }
    for child in children {
        deepest = deepest.max(value_depth(child, limit - 1));
        if deepest >= limit {
            break;
        }
    }
    deepest
}

/// The nesting of `message` as either protocol writes it.
pub(crate) fn message_depth(message: &HubMessage) -> usize {
    let budget = MAX_DEPTH + 1;
    let values_at = |level: usize, values: &mut dyn Iterator<Item = &Value>| {
        values.map(|v| level + value_depth(v, budget.saturating_sub(level))).max().unwrap_or(level)
    };
    match message {
        HubMessage::Invocation(invocation) | HubMessage::StreamInvocation(invocation) => {
            values_at(2, &mut invocation.arguments.iter())
        }
        HubMessage::StreamItem(item) => values_at(1, &mut std::iter::once(&item.item)),
        HubMessage::Completion(completion) => match &completion.outcome {
            CompletionOutcome::Value(value) => values_at(1, &mut std::iter::once(value)),
            CompletionOutcome::Void | CompletionOutcome::Error(_) => 1,
        },
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::from(1), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":"[[[{"}]]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"\"[[["}"#), 1);
        assert_eq!(json_depth(b"1"), 0);
    }

    #[test]
    fn value_depth_is_exact_up_to_its_limit() {
        assert_eq!(value_depth(&Value::from(1), 10), 0);
        assert_eq!(value_depth(&nested(5), 10), 5);
        assert!(value_depth(&nested(5_000), 10) > 10, "stops early on deep values");
    }

    #[test]
    fn an_invocation_counts_itself_and_its_arguments_array() {
        let call = HubMessage::Invocation(crate::Invocation::call("Echo", vec![nested(3)]));
        assert_eq!(message_depth(&call), 5);
        assert!(check(message_depth(&call)).is_ok());
        let deep = HubMessage::Invocation(crate::Invocation::call("Echo", vec![nested(MAX_DEPTH - 1)]));
        assert_eq!(check(message_depth(&deep)), Err(ProtocolError::TooDeep { limit: MAX_DEPTH }));
    }
}
