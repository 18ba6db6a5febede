//! Typed method arguments and send arguments.
//!
//! A hub method declares what it takes as a tuple of `Deserialize` types, e.g. `(String, i64)`;
//! [`FromArguments`] checks the count and converts each value, so a client that sends the wrong
//! number or shape of arguments gets the official "Failed to invoke" error. `Vec<Value>` takes
//! any number of raw values, for variadic methods such as the relay hub's `SendToAll`.
//! An element of the tuple may be an [`UploadStream`] instead: it is fed from the invocation's
//! `streamIds`, not its `arguments`, so only the other elements count as arguments. Each element
//! is a [`Parameter`], which is what lets one tuple mix both kinds.
//! Outgoing sends take a tuple of `Serialize` values or a `Vec<Value>` ([`IntoArguments`]).

use std::iter::Enumerate;
use std::vec;

use protocol::value::{from_value, to_value};
use protocol::{ProtocolError, Value};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use super::upload::{UploadReceiver, UploadStream};

/// Why the arguments of an invocation do not fit the method.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ArgumentError {
    #[error("Invocation provides {provided} argument(s) but target expects {expected}.")]
    Count { provided: usize, expected: usize },
    #[error("Error binding argument {index}: {reason}")]
    Type { index: usize, reason: String },
    /// The client sent a different number of upload streams than the method takes. Unlike the
    /// other variants, the official server reports it as a `HubException`.
    #[error("Client sent {provided} stream(s), Hub method expects {expected}.")]
    Streams { provided: usize, expected: usize },
}

/// Arguments a hub method accepts.
pub trait FromArguments: Sized + Send + 'static {
    /// How many of the parameters are upload streams.
    const UPLOAD_STREAMS: usize = 0;

    /// Converts the invocation's arguments and takes its upload streams (in `streamIds`
    /// order), checking both counts.
    fn from_arguments(arguments: Vec<Value>, uploads: Vec<UploadReceiver>) -> Result<Self, ArgumentError>;
}

/// Any number of arguments, unconverted; no upload streams.
impl FromArguments for Vec<Value> {
    fn from_arguments(arguments: Vec<Value>, uploads: Vec<UploadReceiver>) -> Result<Self, ArgumentError> {
        check_upload_count(uploads.len(), 0)?;
        Ok(arguments)
    }
}

fn check_upload_count(provided: usize, expected: usize) -> Result<(), ArgumentError> {
    if provided == expected {
        Ok(())
    } else {
        Err(ArgumentError::Streams { provided, expected })
    }
}

/// What an invocation brings for its method's parameters; each [`Parameter`] takes its part.
pub struct Inputs {
    values: Enumerate<vec::IntoIter<Value>>,
    uploads: vec::IntoIter<UploadReceiver>,
    expected_values: usize,
}

/// One parameter of a hub method: the next argument converted to a `Deserialize` type, or the
/// next upload stream.
pub trait Parameter: Sized + Send + 'static {
    /// Whether the parameter is fed from `streamIds` rather than `arguments`.
    const IS_UPLOAD: bool;

    /// Takes this parameter's part of the invocation.
    fn take(inputs: &mut Inputs) -> Result<Self, ArgumentError>;
}

impl<T: DeserializeOwned + Send + 'static> Parameter for T {
    const IS_UPLOAD: bool = false;

    fn take(inputs: &mut Inputs) -> Result<Self, ArgumentError> {
        let missing = ArgumentError::Count { provided: 0, expected: inputs.expected_values };
        let (index, value) = inputs.values.next().ok_or(missing)?;
        from_value(value).map_err(|e| ArgumentError::Type { index, reason: e.to_string() })
    }
}

impl<T: DeserializeOwned + Send + 'static> Parameter for UploadStream<T> {
    const IS_UPLOAD: bool = true;

    fn take(inputs: &mut Inputs) -> Result<Self, ArgumentError> {
        let receiver = inputs.uploads.next().ok_or(ArgumentError::Streams { provided: 0, expected: 1 })?;
        Ok(UploadStream::new(receiver))
    }
}

macro_rules! tuple_arguments {
    ($count:expr; $($name:ident),*) => {
        impl<$($name: Parameter),*> FromArguments for ($($name,)*) {
            const UPLOAD_STREAMS: usize = 0 $(+ $name::IS_UPLOAD as usize)*;

            #[allow(unused_variables, unused_mut, clippy::unused_unit)]
            fn from_arguments(arguments: Vec<Value>, uploads: Vec<UploadReceiver>) -> Result<Self, ArgumentError> {
                check_upload_count(uploads.len(), Self::UPLOAD_STREAMS)?;
                let expected_values = $count - Self::UPLOAD_STREAMS;
                if arguments.len() != expected_values {
                    return Err(ArgumentError::Count { provided: arguments.len(), expected: expected_values });
                }
                let mut inputs = Inputs {
                    values: arguments.into_iter().enumerate(),
                    uploads: uploads.into_iter(),
                    expected_values,
                };
                Ok(($($name::take(&mut inputs)?,)*))
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

    use crate::hub::upload::upload_channel;

    #[test]
    fn a_tuple_takes_exactly_its_count() {
        let (name, n) = <(String, i64)>::from_arguments(vec![Value::from("a"), Value::from(2)], vec![]).unwrap();
        assert_eq!((name.as_str(), n), ("a", 2));
        assert_eq!(<(String,)>::from_arguments(vec![], vec![]), Err(ArgumentError::Count { provided: 0, expected: 1 }));
        assert_eq!(
            <(String,)>::from_arguments(vec![Value::from("a"), Value::from("b")], vec![]),
            Err(ArgumentError::Count { provided: 2, expected: 1 })
        );
    }

    #[test]
    fn a_wrong_type_names_the_argument() {
        let error = <(i64,)>::from_arguments(vec![Value::from("not a number")], vec![]).unwrap_err();
        assert!(matches!(error, ArgumentError::Type { index: 0, .. }));
    }

    #[test]
    fn raw_values_take_any_count() {
        assert_eq!(Vec::<Value>::from_arguments(vec![Value::Nil; 3], vec![]).unwrap().len(), 3);
    }

    #[test]
    fn upload_streams_are_not_counted_as_arguments() {
        type Concat = (String, UploadStream<String>, i64, UploadStream<i64>);
        assert_eq!(<Concat as FromArguments>::UPLOAD_STREAMS, 2);
        let uploads = vec![upload_channel().1, upload_channel().1];
        let (sep, _, n, _) = Concat::from_arguments(vec![Value::from("-"), Value::from(3)], uploads).unwrap();
        assert_eq!((sep.as_str(), n), ("-", 3));
        assert_eq!(
            Concat::from_arguments(vec![Value::from("-")], vec![upload_channel().1, upload_channel().1]).unwrap_err(),
            ArgumentError::Count { provided: 1, expected: 2 }
        );
    }

    #[test]
    fn the_upload_count_must_match() {
        assert_eq!(
            <(UploadStream<i64>,)>::from_arguments(vec![], vec![]).unwrap_err(),
            ArgumentError::Streams { provided: 0, expected: 1 }
        );
        assert_eq!(
            <(i64,)>::from_arguments(vec![Value::from(1)], vec![upload_channel().1]).unwrap_err(),
            ArgumentError::Streams { provided: 1, expected: 0 }
        );
        assert_eq!(
            Vec::<Value>::from_arguments(vec![], vec![upload_channel().1]).unwrap_err().to_string(),
            "Client sent 1 stream(s), Hub method expects 0."
        );
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
