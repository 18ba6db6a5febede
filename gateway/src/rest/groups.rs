//! Operations on a group: send, close, existence, listing, and adding or removing one
//! connection. Membership answers come from cluster-wide presence.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::common::{
    found, group_error, group_hub_name, presence_error, Api, ApiVersion, ErrorDetail, Excluded, GroupConnectionPath,
    GroupPath, Path, PayloadMessage, QueryPairs, Reason,
};
use super::RestError;
use crate::cluster::Audience;

/// The members of a group, as Azure pages them (one page here: at most the presence cap).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GroupMembers {
    value: Vec<GroupMember>,
}

#[derive(Debug, Serialize, ToSchema)]
struct GroupMember {
    #[serde(rename = "connectionId")]
    connection_id: String,
}

/// Broadcast a message to every member of a group, on every node.
#[utoipa::path(post, path = "/api/hubs/{hub}/groups/{group}/:send", tag = "groups",
    params(GroupPath, Excluded, ApiVersion), request_body = PayloadMessage,
    responses((status = 202, description = "Queued for every member"),
        (status = 400, description = "Bad name or payload", body = ErrorDetail),
        (status = 413, description = "Body over --rest-max-body", body = ErrorDetail)))]
pub(super) async fn send_to_group(
    State(api): Api,
    Path(path): Path<GroupPath>,
    query: QueryPairs,
    body: axum::body::Body,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    api.send(&lifetime, Audience::Group(path.group), query.all("excluded"), body).await
}

/// Close every connection in a group, on every node, with an optional reason.
#[utoipa::path(post, path = "/api/hubs/{hub}/groups/{group}/:closeConnections", tag = "groups",
    params(GroupPath, Excluded, Reason, ApiVersion),
    responses((status = 204, description = "Every member was told to close"),
        (status = 400, description = "Bad name", body = ErrorDetail)))]
pub(super) async fn close_group(
    State(api): Api,
    Path(path): Path<GroupPath>,
    query: QueryPairs,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    api.close(&lifetime, Audience::Group(path.group), &query).await
}

/// Whether a group has a member on any live node.
#[utoipa::path(head, path = "/api/hubs/{hub}/groups/{group}", tag = "groups", params(GroupPath, ApiVersion),
    responses((status = 200, description = "The group has members"), (status = 404, description = "It has none")))]
pub(super) async fn group_exists(State(api): Api, Path(path): Path<GroupPath>) -> Result<StatusCode, RestError> {
    let hub = group_hub_name(&path.hub, &path.group)?;
    api.presence.group_exists(&hub, &path.group).await.map(found).map_err(presence_error)
}

/// The ids of a group's connections on every live node.
#[utoipa::path(get, path = "/api/hubs/{hub}/groups/{group}/connections", tag = "groups",
    params(GroupPath, ApiVersion),
    responses((status = 200, description = "The members (at most 10,000)", body = GroupMembers)))]
pub(super) async fn group_connections(
    State(api): Api,
    Path(path): Path<GroupPath>,
) -> Result<Json<GroupMembers>, RestError> {
    let hub = group_hub_name(&path.hub, &path.group)?;
    let ids = api.presence.group_connections(&hub, &path.group).await.map_err(presence_error)?;
    let value = ids.into_iter().map(|connection_id| GroupMember { connection_id }).collect();
    Ok(Json(GroupMembers { value }))
}

/// Add a connection, on any node, to a group.
#[utoipa::path(put, path = "/api/hubs/{hub}/groups/{group}/connections/{connectionId}", tag = "groups",
    params(GroupConnectionPath, ApiVersion),
    responses((status = 200, description = "The connection is a member"),
        (status = 404, description = "No node has the connection", body = ErrorDetail),
        (status = 504, description = "Its node did not answer in time", body = ErrorDetail)))]
pub(super) async fn add_connection(
    State(api): Api,
    Path(path): Path<GroupConnectionPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    lifetime.add_to_group(&path.connection_id, &path.group).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}

/// Remove a connection, on any node, from a group.
#[utoipa::path(delete, path = "/api/hubs/{hub}/groups/{group}/connections/{connectionId}", tag = "groups",
    params(GroupConnectionPath, ApiVersion),
    responses((status = 200, description = "The connection is not a member"),
        (status = 404, description = "No node has the connection", body = ErrorDetail),
        (status = 504, description = "Its node did not answer in time", body = ErrorDetail)))]
pub(super) async fn remove_connection(
    State(api): Api,
    Path(path): Path<GroupConnectionPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.group(&path.hub, &path.group)?;
    lifetime.remove_from_group(&path.connection_id, &path.group).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}
