//! Errors of hub methods and the texts clients see for them.
//!
//! The texts are the official server's, because client code and tests match on them. Internal
//! details stay in the logs unless detailed errors are enabled; a [`HubError::Hub`] message is
//! meant for the client and is always shown.

use thiserror::Error;

use super::arguments::ArgumentError;
use crate::cluster::{ClientResultError, GroupError, SendError};

/// Why a hub method failed.
#[derive(Debug, Error)]
pub enum HubError {
    /// A failure whose message is meant for the caller (shown as `HubException: <message>`).
    #[error("{0}")]
    Hub(String),
    /// The arguments did not fit the method.
    #[error(transparent)]
    Arguments(#[from] ArgumentError),
    /// Anything else; the message is only shown with detailed errors on.
    #[error("{0}")]
    Internal(String),
}

impl HubError {
    /// A failure the caller should read.
    pub fn hub(message: impl Into<String>) -> Self {
        Self::Hub(message.into())
    }

    /// An internal failure; the caller sees a generic text.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// The Completion error text for a call of `method`.
    pub fn client_text(&self, method: &str, detailed: bool) -> String {
        match self {
            Self::Hub(message) => {
                format!("An unexpected error occurred invoking '{method}' on the server. HubException: {message}")
            }
            Self::Arguments(error) if detailed => {
                format!("Failed to invoke '{method}' due to an error on the server. InvalidDataException: {error}")
            }
            Self::Arguments(_) => {
                format!("Failed to invoke '{method}' due to an error on the server.")
            }
            Self::Internal(message) if detailed => {
                format!("An unexpected error occurred invoking '{method}' on the server. Exception: {message}")
            }
            Self::Internal(_) => {
                format!("An unexpected error occurred invoking '{method}' on the server.")
            }
        }
    }
}

impl From<SendError> for HubError {
    fn from(error: SendError) -> Self {
        Self::internal(error)
    }
}

impl From<GroupError> for HubError {
    fn from(error: GroupError) -> Self {
        match error {
            GroupError::InvalidName(reason) => Self::Hub(reason.to_string()),
            GroupError::NoSuchConnection(_) | GroupError::Remote(_) | GroupError::Timeout(_) => {
                Self::Hub(error.to_string())
            }
            GroupError::Backplane(_) => Self::internal(error),
        }
    }
}

impl From<ClientResultError> for HubError {
    fn from(error: ClientResultError) -> Self {
        match error {
            ClientResultError::Encode(_) | ClientResultError::Backplane(_) => Self::internal(error),
            _ => Self::Hub(error.to_string()),
        }
    }
}

/// The text for a method the hub does not have.
pub fn unknown_method_text(method: &str) -> String {
    format!("Unknown hub method '{method}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_official_server() {
        assert_eq!(unknown_method_text("X"), "Unknown hub method 'X'");
        let count = HubError::Arguments(ArgumentError::Count { provided: 2, expected: 1 });
        assert_eq!(count.client_text("Echo", false), "Failed to invoke 'Echo' due to an error on the server.");
        assert_eq!(
            count.client_text("Echo", true),
            "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 2 argument(s) but target expects 1."
        );
        assert_eq!(
            HubError::hub("nope").client_text("M", false),
            "An unexpected error occurred invoking 'M' on the server. HubException: nope"
        );
        assert_eq!(
            HubError::internal("secret detail").client_text("M", false),
            "An unexpected error occurred invoking 'M' on the server."
        );
    }
}
