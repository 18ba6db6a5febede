//! Operations on a user (every connection authenticated as that user id, on every node):
//! send, close, existence, and group membership.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;

use super::common::{
    found, presence_error, Api, ApiVersion, ErrorDetail, Excluded, PayloadMessage, Reason, UserGroupPath, UserPath,
};
use super::RestError;
use crate::cluster::Audience;

/// Send a message to every connection of a user, on every node.
#[utoipa::path(post, path = "/api/hubs/{hub}/users/{user}/:send", tag = "users",
    params(UserPath, ApiVersion), request_body = PayloadMessage,
    responses((status = 202, description = "Queued for the user's connections"),
        (status = 400, description = "Bad hub name or payload", body = ErrorDetail),
        (status = 413, description = "Body over --rest-max-body", body = ErrorDetail)))]
pub(super) async fn send_to_user(
    State(api): Api,
    Path(path): Path<UserPath>,
    body: axum::body::Body,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    api.send(&lifetime, Audience::User(path.user), Vec::new(), body).await
}

/// Close every connection of a user, on every node, with an optional reason.
#[utoipa::path(post, path = "/api/hubs/{hub}/users/{user}/:closeConnections", tag = "users",
    params(UserPath, Excluded, Reason, ApiVersion),
    responses((status = 204, description = "The user's connections were told to close"),
        (status = 400, description = "Bad hub name", body = ErrorDetail)))]
pub(super) async fn close_user(
    State(api): Api,
    Path(path): Path<UserPath>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, RestError> {
    api.close(&path.hub, Audience::User(path.user), query.as_deref()).await
}

/// Whether a user has a connection on any live node.
#[utoipa::path(head, path = "/api/hubs/{hub}/users/{user}", tag = "users", params(UserPath, ApiVersion),
    responses((status = 200, description = "The user is connected"), (status = 404, description = "It is not")))]
pub(super) async fn user_exists(State(api): Api, Path(path): Path<UserPath>) -> Result<StatusCode, RestError> {
    let hub = api.lifetime(&path.hub)?.name().to_owned();
    Ok(found(api.gateway.presence().user_exists(&hub, &path.user).await.map_err(presence_error)?))
}

/// Whether one of a user's connections is in a group.
#[utoipa::path(head, path = "/api/hubs/{hub}/users/{user}/groups/{group}", tag = "users",
    params(UserGroupPath, ApiVersion),
    responses((status = 200, description = "A connection of the user is a member"),
        (status = 404, description = "None is")))]
pub(super) async fn user_in_group(State(api): Api, Path(path): Path<UserGroupPath>) -> Result<StatusCode, RestError> {
    let hub = api.group(&path.hub, &path.group)?.name().to_owned();
    let answer = api.gateway.presence().user_in_group(&hub, &path.user, &path.group).await;
    Ok(found(answer.map_err(presence_error)?))
}
