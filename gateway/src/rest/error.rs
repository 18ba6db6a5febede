//! The REST API's error type and its Azure-shaped JSON body.
//!
//! Azure SignalR answers errors with a `ServiceResponse`/`ErrorDetail` object; callers (the
//! Management SDK, hand-written clients) read `code` and `message`. Every refusal here is one
//! variant with its status and code, so a handler cannot invent an ad-hoc response.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

/// Why a REST API request was refused. The text is the `message` of the JSON body.
#[derive(Debug, Error)]
pub enum RestError {
    #[error("A valid access token is required.")]
    Unauthorized,
    #[error("The api-version query parameter is required. Supported versions: {0}.")]
    MissingApiVersion(&'static str),
    #[error("The api-version '{0}' is not supported. Supported versions: {1}.")]
    UnsupportedApiVersion(String, &'static str),
    #[error("{0}")]
    InvalidName(String),
    #[error("The request body is not a valid payload message: {0}")]
    InvalidBody(String),
    #[error("The request body is larger than {0} bytes.")]
    BodyTooLarge(usize),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("Connection '{0}' does not exist.")]
    NoSuchConnection(String),
    #[error("No such API: {0}")]
    NotFound(String),
    #[error("{0}")]
    ClientFailed(String),
    #[error("{0}")]
    GroupLimit(String),
    #[error("{0}")]
    Timeout(String),
    #[error("This gateway has no --jwt-secret, so it cannot sign client tokens.")]
    NoClientTokenKey,
    #[error("The message could not be published: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The JSON error body: `code` and `message` as in Azure's ErrorDetail, `level` as in its
/// ServiceResponse.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    level: &'static str,
    message: &'a str,
}

impl RestError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MissingApiVersion(_)
            | Self::UnsupportedApiVersion(..)
            | Self::InvalidName(_)
            | Self::InvalidBody(_)
            | Self::InvalidQuery(_)
            | Self::ClientFailed(_)
            | Self::GroupLimit(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoSuchConnection(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::NoClientTokenKey => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Error.Request.Unauthorized",
            Self::MissingApiVersion(_) => "ApiVersionUnspecified",
            Self::UnsupportedApiVersion(..) => "UnsupportedApiVersion",
            Self::InvalidName(_) => "Error.Request.InvalidName",
            Self::InvalidBody(_) => "Error.Request.InvalidBody",
            Self::BodyTooLarge(_) => "Error.Request.PayloadTooLarge",
            Self::InvalidQuery(_) => "Error.Request.InvalidQuery",
            Self::NoSuchConnection(_) => "Error.Connection.NotExisted",
            Self::NotFound(_) => "Error.Request.NotFound",
            Self::ClientFailed(_) => "Error.Connection.InvocationFailed",
            Self::GroupLimit(_) => "Error.Group.LimitExceeded",
            Self::Timeout(_) => "Error.Connection.Timeout",
            Self::NoClientTokenKey => "Error.Request.NoClientTokenKey",
            Self::Unavailable(_) => "Error.Service.Unavailable",
            Self::Internal(_) => "Error.Service.Internal",
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let body = ErrorBody { code: self.code(), level: "Error", message: &message };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status(), [(header::CONTENT_TYPE, "application/json")], json).into_response();
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
