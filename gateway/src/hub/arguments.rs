//! Typed method arguments and send arguments.
//!
//! A hub method declares what it takes as a tuple of `Deserialize` types, e.g. `(String, i64)`;
//! [`FromArguments`] checks the count and converts each value, so a client that sends the wrong
//! number or shape of arguments gets the official "Failed to invoke" error. `Vec<Value>` takes
//! any number of raw values, for variadic methods such as the relay hub's `SendToAll`.
//! Outgoing sends take a tuple of `Serialize` values or a `Vec<Value>` ([`IntoArguments`]).

use protocol::value::{from_value, to_value};
use protocol::{ProtocolError, Value};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Why the arguments of an invocation do not fit the method.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ArgumentError {
    #[error("Invocation provides {provided} argument(s) but target expects {expected}.")]
    Count { provided: usize, expected: usize },
    #[error("Error binding argument {index}: {reason}")]
    Type { index: usize, reason: String },
}

/// Arguments a hub method accepts.
pub trait FromArguments: Sized + Send + 'static {
    /// Converts the invocation's arguments, checking their count.
    fn from_arguments(arguments: Vec<Value>) -> Result<Self, ArgumentError>;
}

/// Any number of arguments, unconverted.
impl FromArguments for Vec<Value> {
    fn from_arguments(arguments: Vec<Value>) -> Result<Self, ArgumentError> {
        Ok(arguments)
    }
}

fn convert<T: DeserializeOwned>(index: usize, value: Value) -> Result<T, ArgumentError> {
    from_value(value).map_err(|e| ArgumentError::Type { index, reason: e.to_string() })
}

macro_rules! tuple_arguments {
    ($count:expr; $($name:ident),*) => {
        impl<$($name: DeserializeOwned + Send + 'static),*> FromArguments for ($($name,)*) {
            #[allow(unused_variables, unused_mut, clippy::unused_unit)]
            fn from_arguments(arguments: Vec<Value>) -> Result<Self, ArgumentError> {
                if arguments.len() != $count {
                    return Err(ArgumentError::Count { provided: arguments.len(), expected: $count });
                }
                let mut values = arguments.into_iter().enumerate();
                Ok(($({
                    let (index, value) = values.next().ok_or(ArgumentError::Count { provided: 0, expected: $count })?;
                    convert::<$name>(index, value)?
                },)*))
            }
        }

        impl<$($name: Serialize),*> IntoArguments for ($($name,)*) {
            #[allow(non_snake_case)]
            fn into_arguments(self) -> Result<Vec<Value>, ProtocolError> {
                let ($($name,)*) = self;
                Ok(vec![$(to_value(&$name)?),*])
            }
        }
    };
}

/// Values a server-side send passes to the client method.
pub trait IntoArguments {
    /// Converts to protocol values.
    fn into_arguments(self) -> Result<Vec<Value>, ProtocolError>;
}

impl IntoArguments for Vec<Value> {
    fn into_arguments(self) -> Result<Vec<Value>, ProtocolError> {
        Ok(self)
    }
}

tuple_arguments!(0;);
tuple_arguments!(1; A);
tuple_arguments!(2; A, B);
tuple_arguments!(3; A, B, C);
tuple_arguments!(4; A, B, C, D);
tuple_arguments!(5; A, B, C, D, E);
tuple_arguments!(6; A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_takes_exactly_its_count() {
        let (name, n) = <(String, i64)>::from_arguments(vec![Value::from("a"), Value::from(2)]).unwrap();
        assert_eq!((name.as_str(), n), ("a", 2));
        assert_eq!(<(String,)>::from_arguments(vec![]), Err(ArgumentError::Count { provided: 0, expected: 1 }));
        assert_eq!(
            <(String,)>::from_arguments(vec![Value::from("a"), Value::from("b")]),
            Err(ArgumentError::Count { provided: 2, expected: 1 })
        );
    }

    #[test]
    fn a_wrong_type_names_the_argument() {
        let error = <(i64,)>::from_arguments(vec![Value::from("not a number")]).unwrap_err();
        assert!(matches!(error, ArgumentError::Type { index: 0, .. }));
    }

    #[test]
    fn raw_values_take_any_count() {
        assert_eq!(Vec::<Value>::from_arguments(vec![Value::Nil; 3]).unwrap().len(), 3);
    }

    #[test]
    fn tuples_become_values() {
        #[derive(Serialize)]
        struct Msg {
            text: &'static str,
        }
        let values = ("x", 1, Msg { text: "t" }).into_arguments().unwrap();
        assert_eq!(values[0], Value::from("x"));
        assert_eq!(values[1], Value::from(1));
        assert!(values[2].is_map());
    }
}
