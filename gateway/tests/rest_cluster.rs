//! The REST API against a real cluster: three `gateway` processes on one `redis-server`, and
//! every request is sent to a node that does not host the clients it addresses. Delivery,
//! group membership, presence and client results must work across processes exactly as on one
//! node; refusals must deliver nothing; a node killed without warning must stop being reported
//! present within the presence TTL while the survivors stay present. Closing connections and
//! leaving every group: `rest_cluster_closing.rs`.

mod common;

use std::time::{Duration, Instant};

use common::rest::{
    access_token, error_code, expect_marker_without, expect_refusal, node_of, with_version, RestClient,
    RestCluster as Cluster, KEY, MAX_BODY, PRESENCE_DEADLINE,
};
use common::{s, Conversation};
use protocol::{CompletionOutcome, Value};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_broadcast_reaches_clients_on_all_three_nodes_except_the_excluded_one() {
    let cluster = Cluster::start().await;
    let (mut on_a, _) = cluster.client(0, None).await;
    let (mut on_b, _) = cluster.client(1, None).await;
    let (mut on_c, _) = cluster.client(2, None).await;
    let (mut excluded, excluded_id) = cluster.client(2, None).await;
    let rest = cluster.rest(1);

    rest.send(&format!("/api/hubs/chat/:send?excluded={excluded_id}"), "news", vec![json!("hello"), json!(7)]).await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(client.expect_invocation("news").await.arguments, vec![s("hello"), Value::from(7)]);
    }
    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(&mut excluded, "marker", &["news"]).await;
}

#[tokio::test]
async fn group_user_and_connection_sends_reach_exactly_their_audience_on_other_nodes() {
    let cluster = Cluster::start().await;
    let (mut alice_on_b, _) = cluster.client(1, Some("alice")).await;
    let (mut alice_on_c, _) = cluster.client(2, Some("alice")).await;
    let (mut bob, _) = cluster.client(2, Some("bob")).await;
    let (mut carol, carol_id) = cluster.client(1, None).await;
    bob.invoke_void("JoinGroup", vec![s("room")]).await;
    carol.invoke_void("JoinGroup", vec![s("room")]).await;
    let rest = cluster.rest(0);

    rest.send("/api/hubs/chat/groups/room/:send", "to_room", vec![json!(1)]).await;
    rest.send("/api/hubs/chat/users/alice/:send", "to_alice", vec![json!(2)]).await;
    rest.send(&format!("/api/hubs/chat/connections/{carol_id}/:send"), "to_carol", vec![json!(3)]).await;

    assert_eq!(bob.expect_invocation("to_room").await.arguments, vec![Value::from(1)]);
    assert_eq!(carol.expect_invocation("to_room").await.arguments, vec![Value::from(1)]);
    assert_eq!(alice_on_b.expect_invocation("to_alice").await.arguments, vec![Value::from(2)]);
    assert_eq!(alice_on_c.expect_invocation("to_alice").await.arguments, vec![Value::from(2)]);
    assert_eq!(carol.expect_invocation("to_carol").await.arguments, vec![Value::from(3)]);

    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(&mut alice_on_b, "marker", &["to_room", "to_carol"]).await;
    expect_marker_without(&mut alice_on_c, "marker", &["to_room", "to_carol"]).await;
    expect_marker_without(&mut bob, "marker", &["to_alice", "to_carol"]).await;
    expect_marker_without(&mut carol, "marker", &["to_alice"]).await;
}

#[tokio::test]
async fn a_connection_on_another_node_is_added_to_and_removed_from_a_group() {
    let cluster = Cluster::start().await;
    let (mut dave, dave_id) = cluster.client(2, None).await;
    let (mut witness, _) = cluster.client(1, None).await;
    witness.invoke_void("JoinGroup", vec![s("team")]).await;
    let rest = cluster.rest(0);
    let membership = format!("/api/hubs/chat/groups/team/connections/{dave_id}");

    let (status, body) = rest.call(Method::PUT, &membership, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The PUT answered once node C applied it: the next group send reaches dave.
    rest.send("/api/hubs/chat/groups/team/:send", "while_member", vec![]).await;
    dave.expect_invocation("while_member").await;

    let (status, body) = rest.call(Method::DELETE, &membership, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    rest.send("/api/hubs/chat/groups/team/:send", "after_removal", vec![]).await;
    witness.expect_invocation("after_removal").await;
    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(&mut dave, "marker", &["after_removal"]).await;
}

/// PUT and DELETE of a group membership for `ghost`, a connection that exists nowhere, through
/// `rest`: 404 with Azure's error, quickly (not after the 5 s group acknowledgement timeout).
async fn group_changes_for_a_missing_connection_are_404(rest: &RestClient, ghost: &str) {
    let path = format!("/api/hubs/chat/groups/team/connections/{ghost}");
    for method in [Method::PUT, Method::DELETE] {
        let started = Instant::now();
        let (status, body) = rest.call(method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {ghost}: {body}");
        assert_eq!(error_code(&body), "Error.Connection.NotExisted", "{method} {ghost}");
        assert!(started.elapsed() < Duration::from_secs(2), "{method} {ghost}: answered after {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn group_changes_for_a_connection_of_no_live_node_or_of_the_called_node_are_404() {
    let cluster = Cluster::start().await;
    let (_on_a, on_a_id) = cluster.client(0, None).await;
    let rest = cluster.rest(0);
    for ghost in [format!("{}.ghost", node_of(&on_a_id)), "gone-node.ghost".to_owned(), "no-node".to_owned()] {
        group_changes_for_a_missing_connection_are_404(&rest, &ghost).await;
    }
}

/// The node named by the id answers that it has no such connection; the REST API must turn
/// that answer into 404 (it once answered 500 `Error.Service.Internal`).
#[tokio::test]
async fn group_changes_for_a_missing_connection_of_another_live_node_are_404() {
    let cluster = Cluster::start().await;
    let (_on_c, on_c_id) = cluster.client(2, None).await;
    let ghost = format!("{}.ghost", node_of(&on_c_id));
    group_changes_for_a_missing_connection_are_404(&cluster.rest(0), &ghost).await;
}

#[tokio::test]
async fn closing_a_connection_on_another_node_sends_the_reason_and_ends_its_socket() {
    let cluster = Cluster::start().await;
    let (mut erin, erin_id) = cluster.client(2, None).await;
    let rest = cluster.rest(0);
    assert_eq!(rest.head(&format!("/api/hubs/chat/connections/{erin_id}")).await, StatusCode::OK);

    let (status, body) =
        rest.call(Method::DELETE, &format!("/api/hubs/chat/connections/{erin_id}?reason=bye"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let close = erin.expect_close().await;
    assert_eq!(close.error.as_deref(), Some("bye"));
    assert!(!close.allow_reconnect, "a connection closed by the server API must not reconnect");
    assert!(erin.closed().await.is_none(), "nothing but the end of the socket follows the Close");
    rest.wait_for_head(&format!("/api/hubs/chat/connections/{erin_id}"), StatusCode::NOT_FOUND, common::DEADLINE).await;
}

#[tokio::test]
async fn head_and_group_listing_answer_for_clients_on_other_nodes() {
    let cluster = Cluster::start().await;
    let (mut frank, frank_id) = cluster.client(1, Some("frank")).await;
    let (mut gina, gina_id) = cluster.client(2, Some("gina")).await;
    let (_anonymous, anonymous_id) = cluster.client(2, None).await;
    frank.invoke_void("JoinGroup", vec![s("crew")]).await;
    gina.invoke_void("JoinGroup", vec![s("crew")]).await;
    let rest = cluster.rest(0);

    for present in
        ["/users/frank", "/users/gina", "/groups/crew", "/users/frank/groups/crew", "/users/gina/groups/crew"]
    {
        rest.wait_for_head(&format!("/api/hubs/chat{present}"), StatusCode::OK, PRESENCE_DEADLINE).await;
    }
    for id in [&frank_id, &gina_id, &anonymous_id] {
        assert_eq!(rest.head(&format!("/api/hubs/chat/connections/{id}")).await, StatusCode::OK, "{id}");
    }
    let absent = [
        format!("/connections/{}.ghost", node_of(&frank_id)),
        "/connections/gone-node.ghost".to_owned(),
        "/users/nobody".to_owned(),
        "/groups/empty".to_owned(),
        "/users/frank/groups/empty".to_owned(),
        "/users/nobody/groups/crew".to_owned(),
    ];
    for path in absent {
        assert_eq!(rest.head(&format!("/api/hubs/chat{path}")).await, StatusCode::NOT_FOUND, "{path}");
    }
    let mut members = vec![frank_id.clone(), gina_id.clone()];
    members.sort();
    assert_eq!(rest.listed_connections("/api/hubs/chat/groups/crew/connections").await, members);
    assert!(rest.listed_connections("/api/hubs/chat/groups/empty/connections").await.is_empty());

    frank.invoke_void("LeaveGroup", vec![s("crew")]).await;
    rest.wait_for_head("/api/hubs/chat/users/frank/groups/crew", StatusCode::NOT_FOUND, PRESENCE_DEADLINE).await;
    assert_eq!(rest.head("/api/hubs/chat/groups/crew").await, StatusCode::OK, "gina is still in the group");
    assert_eq!(rest.listed_connections("/api/hubs/chat/groups/crew/connections").await, vec![gina_id]);
}

#[tokio::test]
async fn invoke_returns_the_value_a_client_on_another_node_answers() {
    let cluster = Cluster::start().await;
    let (mut ivy, ivy_id) = cluster.client(2, None).await;
    let rest = cluster.rest(0);
    let path = format!("/api/hubs/chat/connections/{ivy_id}/:invoke");

    let call = tokio::spawn({
        let (rest, path) = (rest.clone(), path.clone());
        async move { rest.post(&path, json!({ "target": "Ask", "arguments": [2, "two"] })).await }
    });
    let question = ivy.expect_invocation("Ask").await;
    assert_eq!(question.arguments, vec![Value::from(2), s("two")]);
    ivy.answer(&question, CompletionOutcome::Value(s("forty-two"))).await;
    let (status, body) = call.await.expect("the REST call task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("JSON"), json!({ "result": "forty-two" }));

    let call = tokio::spawn(async move { rest.post(&path, json!({ "target": "Ask" })).await });
    let question = ivy.expect_invocation("Ask").await;
    ivy.answer(&question, CompletionOutcome::Error("no answer".into())).await;
    let (status, body) = call.await.expect("the REST call task");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "Error.Connection.InvocationFailed");
}

#[tokio::test]
async fn refused_tokens_get_401_and_deliver_nothing() {
    let cluster = Cluster::start().await;
    let (mut jack, _) = cluster.client(2, None).await;
    let rest = cluster.rest(0);
    let url = rest.url(&with_version("/api/hubs/chat/:send"));
    // The same operation on another node of the cluster is another URL: no replay there.
    let url_on_b = cluster.rest(1).url("/api/hubs/chat/:send");
    let url_of_other_hub = rest.url("/api/hubs/other/:send");
    let refused = [
        ("no token", None),
        ("wrong key", Some(access_token("not-the-access-key", &url, 60))),
        ("audience on another node", Some(access_token(KEY, &url_on_b, 60))),
        ("audience of another hub", Some(access_token(KEY, &url_of_other_hub, 60))),
        ("expired beyond the leeway", Some(access_token(KEY, &url, -60))),
    ];
    let body = json!({ "target": "secret", "arguments": [] }).to_string();
    for (why, token) in refused {
        let (status, text) = rest.call_with(Method::POST, &url, token.as_deref(), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {text}");
        assert_eq!(error_code(&text), "Error.Request.Unauthorized", "{why}");
    }
    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(&mut jack, "marker", &["secret"]).await;
}

#[tokio::test]
async fn malformed_requests_get_azure_shaped_errors_and_deliver_nothing() {
    let cluster = Cluster::start().await;
    let (mut kim, _) = cluster.client(2, None).await;
    kim.invoke_void("JoinGroup", vec![s("g")]).await;
    let rest = cluster.rest(0);
    let payload = json!({ "target": "bad" }).to_string();
    let bad_request = StatusCode::BAD_REQUEST;

    for body in ["{not json", r#"{"arguments":[1]}"#, r#"{"target":""}"#, r#"{"target":"bad","arguments":7}"#] {
        expect_refusal(&rest, Method::POST, "/api/hubs/chat/:send", body, bad_request, "Error.Request.InvalidBody")
            .await;
    }
    let long_group = "g".repeat(1025);
    let bad_names = [
        "/api/hubs/1chat/:send".to_owned(),
        "/api/hubs/ch-at/:send".to_owned(),
        format!("/api/hubs/{}/:send", "h".repeat(129)),
        "/api/hubs/chat/groups//:send".to_owned(),
        format!("/api/hubs/chat/groups/{long_group}/:send"),
    ];
    for path in &bad_names {
        expect_refusal(&rest, Method::POST, path, &payload, bad_request, "Error.Request.InvalidName").await;
    }
    let long_membership = format!("/api/hubs/chat/groups/{long_group}/connections/x");
    expect_refusal(&rest, Method::PUT, &long_membership, "", bad_request, "Error.Request.InvalidName").await;

    let oversized = json!({ "target": "bad", "arguments": ["x".repeat(MAX_BODY)] }).to_string();
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    expect_refusal(&rest, Method::POST, "/api/hubs/chat/:send", &oversized, too_large, "Error.Request.PayloadTooLarge")
        .await;

    for path in [
        "/api/hubs/chat/:explode",
        "/api/hubs/chat/groups/g/:explode",
        "/api/hubs/chat/users/u/:explode",
        "/api/hubs/chat/connections/c/:explode",
    ] {
        expect_refusal(&rest, Method::POST, path, &payload, StatusCode::NOT_FOUND, "Error.Request.NotFound").await;
    }

    for (query, code) in [("", "ApiVersionUnspecified"), ("?api-version=1999-01-01", "UnsupportedApiVersion")] {
        let url = rest.url(&format!("/api/hubs/chat/:send{query}"));
        let token = access_token(KEY, &url, 60);
        let (status, text) = rest.call_with(Method::POST, &url, Some(&token), Some(payload.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {text}");
        assert_eq!(error_code(&text), code, "{query:?}");
    }

    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(&mut kim, "marker", &["bad"]).await;
}

#[tokio::test]
async fn users_and_groups_of_a_killed_node_stop_being_present_and_the_survivors_stay() {
    let mut cluster = Cluster::start().await;
    let (mut kate, _) = cluster.client(2, Some("kate")).await;
    let (mut leo, _) = cluster.client(1, Some("leo")).await;
    kate.invoke_void("JoinGroup", vec![s("night")]).await;
    leo.invoke_void("JoinGroup", vec![s("day")]).await;
    let rest = cluster.rest(0);
    let on_c = ["/users/kate", "/groups/night", "/users/kate/groups/night"];
    let on_b = ["/users/leo", "/groups/day", "/users/leo/groups/day"];
    for path in on_c.iter().chain(&on_b) {
        rest.wait_for_head(&format!("/api/hubs/chat{path}"), StatusCode::OK, PRESENCE_DEADLINE).await;
    }

    // SIGKILL (tokio's `Child::kill`): no graceful shutdown, node C deregisters nothing.
    cluster.nodes[2].kill().await;
    // Its entries live on until its lease expires: the node did not say goodbye.
    assert_eq!(rest.head("/api/hubs/chat/users/kate").await, StatusCode::OK, "a killed node cannot remove its entries");

    // The cluster runs with a 3 s lease refreshed every second: the lease expires within 3 s
    // of the last heartbeat, so within 4 s of the kill; a generous margin for a loaded machine.
    let lease_expiry = Duration::from_secs(10);
    for path in on_c {
        rest.wait_for_head(&format!("/api/hubs/chat{path}"), StatusCode::NOT_FOUND, lease_expiry).await;
    }
    for path in on_b {
        assert_eq!(rest.head(&format!("/api/hubs/chat{path}")).await, StatusCode::OK, "{path} on a surviving node");
    }
    assert!(rest.listed_connections("/api/hubs/chat/groups/night/connections").await.is_empty());
}
