//! Values carried in arguments, stream items and results.
//!
//! [`Value`] is the MessagePack data model (`rmpv::Value`): it holds everything JSON can
//! express plus binary and extension values, so one model serves both hub protocols.
//! Rust types cross into it through MessagePack with named struct fields, which keeps structs
//! as maps (objects) rather than positional arrays.

use serde::{de::DeserializeOwned, Serialize};

use crate::ProtocolError;

/// A protocol-neutral value.
pub use rmpv::Value;

/// Converts any serialisable Rust value into a [`Value`]; structs become maps keyed by field name.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ProtocolError> {
    let bytes = rmp_serde::to_vec_named(value).map_err(|e| ProtocolError::Value(e.to_string()))?;
    rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| ProtocolError::Value(e.to_string()))
}

/// Converts a [`Value`] into a Rust type.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ProtocolError> {
    rmpv::ext::from_value(value).map_err(|e| ProtocolError::Value(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Point {
        x: i32,
        label: String,
    }

    #[test]
    fn structs_become_maps_and_come_back() {
        let point = Point { x: -3, label: "é".into() };
        let value = to_value(&point).unwrap();
        assert!(value.is_map(), "struct must be a map, got {value:?}");
        assert_eq!(from_value::<Point>(value).unwrap(), point);
    }

    #[test]
    fn a_wrong_shape_is_a_value_error() {
        let err = from_value::<Point>(Value::from("nope")).unwrap_err();
        assert!(matches!(err, ProtocolError::Value(_)));
    }
}
