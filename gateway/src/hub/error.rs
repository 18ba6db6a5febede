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
    Arguments(ArgumentError),
    /// Anything else; the message is only shown with detailed errors on.
    #[error("{0}")]
    Internal(String),
    /// A failure of a named kind, as the official server reports an exception of a given type:
    /// the caller sees `<kind>: <message>` only with detailed errors on.
    #[error("{kind}: {message}")]
    Exception { kind: String, message: String },
}

impl HubError {
    /// A failure the caller should read.
    pub fn hub(message: impl Into<String>) -> Self {
        Self::Hub(message.into())
    }

    /// A failure of the named kind (e.g. `InvalidOperationException`); with detailed errors on,
    /// the caller sees the kind and the message.
    pub fn exception(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Exception { kind: kind.into(), message: message.into() }
    }

    /// An internal failure; the caller sees a generic text.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// The Completion error text for a call of `method` that failed before returning (for a
    /// streaming method: before its stream started).
    pub fn client_text(&self, method: &str, detailed: bool) -> String {
        let summary = match self {
            Self::Arguments(_) => format!("Failed to invoke '{method}' due to an error on the server."),
            Self::Hub(_) | Self::Internal(_) | Self::Exception { .. } => {
                format!("An unexpected error occurred invoking '{method}' on the server.")
            }
        };
        self.with_detail(summary, detailed)
    }

    /// The Completion error text for a stream that failed after it started; the items already
    /// sent stay sent.
    pub fn streaming_text(&self, detailed: bool) -> String {
        self.with_detail("An error occurred on the server while streaming results.".to_owned(), detailed)
    }

    /// Appends ` <ExceptionType>: <message>` as the official server does: always for a
    /// [`HubError::Hub`], for the others only with detailed errors on.
    fn with_detail(&self, summary: String, detailed: bool) -> String {
        match self {
            Self::Hub(message) => format!("{summary} HubException: {message}"),
            Self::Arguments(error) if detailed => format!("{summary} InvalidDataException: {error}"),
            Self::Internal(message) if detailed => format!("{summary} Exception: {message}"),
            Self::Exception { kind, message } if detailed => format!("{summary} {kind}: {message}"),
            Self::Arguments(_) | Self::Internal(_) | Self::Exception { .. } => summary,
        }
    }
}

impl From<ArgumentError> for HubError {
    fn from(error: ArgumentError) -> Self {
        match error {
            // The official server checks the stream count when it invokes the method and
            // reports a mismatch as a HubException.
            ArgumentError::Streams { .. } => Self::Hub(error.to_string()),
            other => Self::Arguments(other),
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
            GroupError::NoSuchConnection(_)
            | GroupError::Remote(_)
            | GroupError::Timeout(_)
            | GroupError::TooManyGroups { .. } => Self::Hub(error.to_string()),
            GroupError::Backplane(_) | GroupError::UserGroups(_) => Self::internal(error),
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
        assert_eq!(
            HubError::from(ArgumentError::Streams { provided: 2, expected: 1 }).client_text("M", false),
            "An unexpected error occurred invoking 'M' on the server. HubException: Client sent 2 stream(s), Hub method expects 1."
        );
    }

    #[test]
    fn a_named_exception_shows_its_kind_only_with_detailed_errors() {
        let error = HubError::exception("InvalidOperationException", "An error occurred.");
        assert_eq!(
            error.client_text("ThrowException", true),
            "An unexpected error occurred invoking 'ThrowException' on the server. InvalidOperationException: An error occurred."
        );
        assert_eq!(
            error.client_text("ThrowException", false),
            "An unexpected error occurred invoking 'ThrowException' on the server."
        );
    }

    #[test]
    fn streaming_texts_follow_the_same_detail_rules() {
        assert_eq!(
            HubError::hub("gone").streaming_text(false),
            "An error occurred on the server while streaming results. HubException: gone"
        );
        assert_eq!(
            HubError::internal("disk").streaming_text(false),
            "An error occurred on the server while streaming results."
        );
        assert_eq!(
            HubError::internal("disk").streaming_text(true),
            "An error occurred on the server while streaming results. Exception: disk"
        );
    }
}
