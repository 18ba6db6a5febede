//! How values outside JSON's data model are written as JSON.
//!
//! Values are kept in the MessagePack data model so that a MessagePack client's bytes and
//! timestamps survive a round trip. When such a value goes to a JSON client it is written the
//! way the official server writes the equivalent .NET types: bytes as base64 text, timestamps
//! (extension type -1) as RFC 3339 text. Other extension values become base64 of their data.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::Value;

/// The MessagePack extension type of timestamps.
const TIMESTAMP_EXT: i8 = -1;

/// A value serialised with the JSON mapping above.
pub(crate) struct JsonValue<'a>(pub &'a Value);

/// A slice of values serialised with the JSON mapping above.
pub(crate) struct JsonValues<'a>(pub &'a [Value]);

impl Serialize for JsonValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&JsonValue(value))?;
        }
        seq.end()
    }
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Binary(bytes) => serializer.serialize_str(&base64(bytes)),
            Value::Ext(TIMESTAMP_EXT, data) => match timestamp_text(data) {
                Some(text) => serializer.serialize_str(&text),
                None => serializer.serialize_str(&base64(data)),
            },
            Value::Ext(_, data) => serializer.serialize_str(&base64(data)),
            Value::Array(items) => JsonValues(items).serialize(serializer),
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    match key {
                        Value::String(text) if text.as_str().is_some() => {
                            map.serialize_entry(text.as_str().unwrap_or_default(), &JsonValue(value))?
                        }
                        // JSON keys are text: other keys are written as their JSON text.
                        other => map.serialize_entry(&other.to_string(), &JsonValue(value))?,
                    }
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The RFC 3339 text of a MessagePack timestamp (32, 64 or 96 bit form); `None` when the data
/// is not a timestamp this can write (malformed, or before 1970).
fn timestamp_text(data: &[u8]) -> Option<String> {
    let (seconds, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let packed = u64::from_be_bytes(data.try_into().ok()?);
            ((packed & 0x3_FFFF_FFFF) as i64, (packed >> 34) as u32)
        }
        12 => (i64::from_be_bytes(data[4..].try_into().ok()?), u32::from_be_bytes(data[..4].try_into().ok()?)),
        _ => return None,
    };
    let since_epoch = Duration::new(u64::try_from(seconds).ok()?, nanos);
    let time = SystemTime::UNIX_EPOCH.checked_add(since_epoch)?;
    Some(if nanos == 0 {
        humantime::format_rfc3339_seconds(time).to_string()
    } else {
        humantime::format_rfc3339_nanos(time).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &Value) -> String {
        serde_json::to_string(&JsonValue(value)).unwrap()
    }

    #[test]
    fn bytes_are_base64_text() {
        assert_eq!(json(&Value::Binary(b"hello".to_vec())), "\"aGVsbG8=\"");
    }

    #[test]
    fn timestamps_are_rfc3339_text_in_every_width() {
        // 2000-01-01T00:00:00Z is 946684800 seconds after the epoch.
        assert_eq!(json(&Value::Ext(-1, 946_684_800u32.to_be_bytes().to_vec())), "\"2000-01-01T00:00:00Z\"");
        let packed = (5u64 << 34) | 946_684_800;
        assert_eq!(json(&Value::Ext(-1, packed.to_be_bytes().to_vec())), "\"2000-01-01T00:00:00.000000005Z\"");
        let mut wide = 0u32.to_be_bytes().to_vec();
        wide.extend_from_slice(&946_684_800i64.to_be_bytes());
        assert_eq!(json(&Value::Ext(-1, wide)), "\"2000-01-01T00:00:00Z\"");
    }

    #[test]
    fn nested_values_use_the_same_mapping() {
        let value = Value::Map(vec![
            (Value::from("b"), Value::Array(vec![Value::Binary(vec![1, 2, 3])])),
            (Value::from(1), Value::Nil),
        ]);
        assert_eq!(json(&value), "{\"b\":[\"AQID\"],\"1\":null}");
    }

    #[test]
    fn malformed_timestamps_and_other_extensions_fall_back_to_base64() {
        assert_eq!(json(&Value::Ext(-1, vec![1, 2])), "\"AQI=\"");
        assert_eq!(json(&Value::Ext(5, vec![1, 2])), "\"AQI=\"");
    }
}
