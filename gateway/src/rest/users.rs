//! Operations on a user (every connection authenticated as that user id, on every node):
//! send, close, existence, and group membership.

use axum::extract::State;
use axum::http::StatusCode;

use std::time::Duration;

use serde::Deserialize;
use utoipa::IntoParams;

use super::common::{
    found, group_error, group_hub_name, hub_name, presence_error, Api, ApiVersion, ErrorDetail, Excluded, Path,
    PayloadMessage, QueryPairs, Reason, UserGroupPath, UserPath,
};
use super::RestError;
use crate::cluster::{Audience, Membership};

/// How long a user's group membership lasts when no `ttl` is given (Azure's bound: one year).
const DEFAULT_MEMBERSHIP: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long the user stays in the group.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read with QueryPairs; here to document it
pub(super) struct Ttl {
    /// Seconds the membership lasts, for connections the user opens later too; absent: one
    /// year; `0`: only the user's current connections join.
    ttl: Option<u64>,
}

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
    query: QueryPairs,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    api.close(&lifetime, Audience::User(path.user), &query).await
}

/// Whether a user has a connection on any live node.
#[utoipa::path(head, path = "/api/hubs/{hub}/users/{user}", tag = "users", params(UserPath, ApiVersion),
    responses((status = 200, description = "The user is connected"), (status = 404, description = "It is not")))]
pub(super) async fn user_exists(State(api): Api, Path(path): Path<UserPath>) -> Result<StatusCode, RestError> {
    let hub = hub_name(&path.hub)?;
    api.presence.user_exists(&hub, &path.user).await.map(found).map_err(presence_error)
}

/// Whether one of a user's connections is in a group.
#[utoipa::path(head, path = "/api/hubs/{hub}/users/{user}/groups/{group}", tag = "users",
    params(UserGroupPath, ApiVersion),
    responses((status = 200, description = "A connection of the user is a member"),
        (status = 404, description = "None is")))]
pub(super) async fn user_in_group(State(api): Api, Path(path): Path<UserGroupPath>) -> Result<StatusCode, RestError> {
    let hub = group_hub_name(&path.hub, &path.group)?;
    api.presence.user_in_group(&hub, &path.user, &path.group).await.map(found).map_err(presence_error)
}

/// Add a user to a group: the user's connections on every node join, and so do the
/// connections it opens later, on any node, until the membership expires.
#[utoipa::path(put, path = "/api/hubs/{hub}/users/{user}/groups/{group}", tag = "users",
    params(UserGroupPath, Ttl, ApiVersion),
    responses((status = 200, description = "The user is a member"),
        (status = 400, description = "Bad name or ttl, or the user is in too many groups", body = ErrorDetail),
        (status = 503, description = "The membership could not be stored", body = ErrorDetail)))]
pub(super) async fn add_user_to_group(
    State(api): Api,
    Path(path): Path<UserGroupPath>,
    query: QueryPairs,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    let membership = membership(query.last("ttl"))?;
    lifetime.add_user_to_group(&path.user, &path.group, membership).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}

/// Remove a user from a group: its membership and every connection of the user, on every
/// node.
#[utoipa::path(delete, path = "/api/hubs/{hub}/users/{user}/groups/{group}", tag = "users",
    params(UserGroupPath, ApiVersion),
    responses((status = 204, description = "The user is not a member"),
        (status = 503, description = "The membership could not be removed", body = ErrorDetail)))]
pub(super) async fn remove_user_from_group(
    State(api): Api,
    Path(path): Path<UserGroupPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    lifetime.remove_user_from_group(&path.user, &path.group).await.map_err(group_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user from every group: its memberships and every connection of the user, on
/// every node.
#[utoipa::path(delete, path = "/api/hubs/{hub}/users/{user}/groups", tag = "users", params(UserPath, ApiVersion),
    responses((status = 204, description = "The user is in no group"),
        (status = 503, description = "The memberships could not be removed", body = ErrorDetail)))]
pub(super) async fn remove_user_from_all_groups(
    State(api): Api,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    lifetime.remove_user_from_all_groups(&path.user).await.map_err(group_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The membership a `ttl` query value asks for.
fn membership(ttl: Option<String>) -> Result<Membership, RestError> {
    let Some(text) = ttl else { return Ok(Membership::For(DEFAULT_MEMBERSHIP)) };
    match text.parse::<u64>() {
        Ok(0) => Ok(Membership::CurrentConnections),
        Ok(seconds) => Ok(Membership::For(Duration::from_secs(seconds).min(DEFAULT_MEMBERSHIP))),
        Err(_) => Err(RestError::InvalidQuery(format!("ttl must be a whole number of seconds, not '{text}'"))),
    }
}
