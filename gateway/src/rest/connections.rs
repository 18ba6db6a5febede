//! Operations on one connection, wherever it is: send, invoke, close, existence, leaving
//! every group. Connection ids name their node, so each goes straight to that node.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use tracing::debug;
use utoipa::ToSchema;

use super::common::{
    client_result_error, found, group_error, send_error, Api, ApiVersion, ConnectionPath, ErrorDetail, Path,
    PayloadMessage, QueryPairs, Reason,
};
use super::RestError;
use crate::cluster::Audience;

/// What a client returned to `:invoke`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InvokeResult {
    /// The value the client's handler returned.
    #[schema(value_type = Object)]
    result: serde_json::Value,
}

/// Send a message to one connection.
#[utoipa::path(post, path = "/api/hubs/{hub}/connections/{connectionId}/:send", tag = "connections",
    params(ConnectionPath, ApiVersion), request_body = PayloadMessage,
    responses((status = 202, description = "Queued for the connection if it exists"),
        (status = 400, description = "Bad hub name or payload", body = ErrorDetail),
        (status = 413, description = "Body over --rest-max-body", body = ErrorDetail)))]
pub(super) async fn send_to_connection(
    State(api): Api,
    Path(path): Path<ConnectionPath>,
    body: axum::body::Body,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    api.send(&lifetime, Audience::Connection(path.connection_id), Vec::new(), body).await
}

/// Invoke a client method on one connection and return the client's result.
#[utoipa::path(post, path = "/api/hubs/{hub}/connections/{connectionId}/:invoke", tag = "connections",
    params(ConnectionPath, ApiVersion), request_body = PayloadMessage,
    responses((status = 200, description = "The client's result", body = InvokeResult),
        (status = 400, description = "The client's handler failed, or a bad payload", body = ErrorDetail),
        (status = 404, description = "No such connection, or it closed first", body = ErrorDetail),
        (status = 504, description = "No result within --client-result-timeout", body = ErrorDetail)))]
pub(super) async fn invoke(
    State(api): Api,
    Path(path): Path<ConnectionPath>,
    body: axum::body::Body,
) -> Result<Json<InvokeResult>, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    let (target, arguments) = api.read_payload(body).await?;
    let result = lifetime.invoke_client(&path.connection_id, &target, arguments).await.map_err(client_result_error)?;
    Ok(Json(InvokeResult { result }))
}

/// Close one connection: the client gets a Close (no reconnect) carrying the reason. 200
/// also when it is already gone.
#[utoipa::path(delete, path = "/api/hubs/{hub}/connections/{connectionId}", tag = "connections",
    params(ConnectionPath, Reason, ApiVersion),
    responses((status = 200, description = "The connection was told to close, or was gone")))]
pub(super) async fn close_connection(
    State(api): Api,
    Path(path): Path<ConnectionPath>,
    query: QueryPairs,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    let reached = lifetime.close_connection(&path.connection_id, query.last("reason")).await.map_err(send_error)?;
    debug!(hub = %lifetime.name(), connection = %path.connection_id, reached, "REST close connection");
    Ok(StatusCode::OK)
}

/// Whether a connection exists, asked of the node its id names.
#[utoipa::path(head, path = "/api/hubs/{hub}/connections/{connectionId}", tag = "connections",
    params(ConnectionPath, ApiVersion),
    responses((status = 200, description = "The connection exists"), (status = 404, description = "It does not")))]
pub(super) async fn connection_exists(
    State(api): Api,
    Path(path): Path<ConnectionPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    let exists = lifetime.connection_exists(&path.connection_id).await.map_err(group_error)?;
    Ok(found(exists))
}

/// Remove a connection from every group it is in.
#[utoipa::path(delete, path = "/api/hubs/{hub}/connections/{connectionId}/groups", tag = "connections",
    params(ConnectionPath, ApiVersion),
    responses((status = 200, description = "The connection is in no group"),
        (status = 404, description = "No node has the connection", body = ErrorDetail)))]
pub(super) async fn leave_all_groups(
    State(api): Api,
    Path(path): Path<ConnectionPath>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    lifetime.remove_from_all_groups(&path.connection_id).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}
