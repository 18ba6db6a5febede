//! The REST API against a real cluster: three `gateway` processes on one `redis-server`, and
//! every request is sent to a node that does not host the clients it addresses. Delivery,
//! group membership, closing, presence and client results must work across processes exactly
//! as on one node; refusals must deliver nothing; a node killed without warning must stop
//! being reported present within the presence TTL while the survivors stay present.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{token, SECRET};
use common::processes::{GatewayProcess, RedisServer};
use common::rest::{access_token, error_code, with_version, RestClient};
use common::{s, Conversation, TestClient};
use protocol::{CompletionOutcome, HubMessage, Value};
use reqwest::{Method, StatusCode};
use serde_json::json;

const KEY: &str = "cluster-access-key";
const HUB_PATH: &str = "/hubs/chat";
/// `--rest-max-body` of every node, small so a 413 is cheap to provoke.
const MAX_BODY: usize = 2048;
/// How long presence changes (written asynchronously to Redis) may take to be visible.
const PRESENCE_DEADLINE: Duration = common::DEADLINE;

/// One `redis-server` and three gateway processes on it, with an access key for the REST API
/// and a client JWT secret to identify users.
struct Cluster {
    nodes: Vec<GatewayProcess>,
    _redis: RedisServer,
}

impl Cluster {
    async fn start() -> Self {
        let redis = RedisServer::start().await;
        let args: Vec<String> = [
            "--backplane",
            "redis",
            "--redis-url",
            &redis.url(),
            "--access-key",
            KEY,
            "--jwt-secret",
            SECRET,
            "--allow-anonymous",
            "--rest-max-body",
            &MAX_BODY.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let (a, b, c) =
            tokio::join!(GatewayProcess::start(&args), GatewayProcess::start(&args), GatewayProcess::start(&args));
        tokio::join!(a.wait_ready(200), b.wait_ready(200), c.wait_ready(200));
        Self { nodes: vec![a, b, c], _redis: redis }
    }

    /// A REST caller of node `index`.
    fn rest(&self, index: usize) -> RestClient {
        RestClient::new(self.nodes[index].addr, KEY)
    }

    /// A WebSocket client of the `chat` hub on node `index`, as `user` when given; with its id.
    async fn client(&self, index: usize, user: Option<&str>) -> (TestClient, String) {
        self.client_of(HUB_PATH, index, user).await
    }

    /// A WebSocket client of the hub at `hub_path` on node `index`, as `user` when given.
    async fn client_of(&self, hub_path: &str, index: usize, user: Option<&str>) -> (TestClient, String) {
        let token = user.map(token);
        let client = TestClient::connect_at(self.nodes[index].addr, hub_path, token.as_deref()).await;
        let id = client.connection_id.clone().expect("negotiate names the connection");
        (client, id)
    }
}

/// The node part of a connection id (`{node}.{local}`).
fn node_of(connection_id: &str) -> &str {
    connection_id.split('.').next().expect("split yields at least one part")
}

/// Waits for the invocation of `marker`, then asserts that no invocation of any of `absent`
/// came before it. Both were sent through the same node to the same client afterwards, so a
/// wrongly delivered message would have arrived first.
async fn expect_marker_without(client: &mut TestClient, marker: &str, absent: &[&str]) {
    client.expect_invocation(marker).await;
    let received: Vec<String> = client
        .pending()
        .iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) => Some(i.target.clone()),
            _ => None,
        })
        .collect();
    for target in absent {
        assert!(
            !received.iter().any(|t| t == target),
            "{target} was delivered; received before {marker}: {received:?}"
        );
    }
}

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

/// Asserts that `method path` with `body` is refused with `expected` and Azure's error `code`.
async fn expect_refusal(rest: &RestClient, method: Method, path: &str, body: &str, expected: StatusCode, code: &str) {
    let (status, text) = rest.call(method.clone(), path, Some(body.to_owned())).await;
    assert_eq!(status, expected, "{method} {path} {body:.80}: {text}");
    assert_eq!(error_code(&text), code, "{method} {path} {body:.80}");
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

    // TODO(merge): pass --presence-heartbeat-interval 1s --presence-node-ttl 3s and shorten the deadline
    // (to about 3 s + 1 s + margin, e.g. 8 s).
    // Default timing: the lease expires within NODE_TTL (15 s) of the last heartbeat (every 5 s).
    let lease_expiry = Duration::from_secs(25);
    for path in on_c {
        rest.wait_for_head(&format!("/api/hubs/chat{path}"), StatusCode::NOT_FOUND, lease_expiry).await;
    }
    for path in on_b {
        assert_eq!(rest.head(&format!("/api/hubs/chat{path}")).await, StatusCode::OK, "{path} on a surviving node");
    }
    assert!(rest.listed_connections("/api/hubs/chat/groups/night/connections").await.is_empty());
}

/// Asserts that the server closed `client` as the server API does: a Close carrying `reason`
/// (none when `None`) that forbids reconnecting, then the end of the socket.
async fn expect_closed_by_the_api(client: &mut TestClient, reason: Option<&str>) {
    let close = client.expect_close().await;
    assert_eq!(close.error.as_deref(), reason, "the Close carries the reason given");
    assert!(!close.allow_reconnect, "a connection closed by the server API must not reconnect");
    assert!(client.closed().await.is_none(), "nothing but the end of the socket follows the Close");
}

/// `POST path` with no body through `rest`, asserting 204.
async fn close_connections(rest: &RestClient, path: &str) {
    let (status, body) = rest.call(Method::POST, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "POST {path} on {}: {body}", rest.addr);
    assert!(body.is_empty(), "a 204 has no body: {body}");
}

#[tokio::test]
async fn closing_a_hub_closes_its_connections_on_every_node_but_the_excluded_and_other_hubs() {
    let cluster = Cluster::start().await;
    let (mut on_a, _) = cluster.client(0, None).await;
    let (mut on_b, _) = cluster.client(1, Some("mia")).await;
    let (mut on_c, _) = cluster.client(2, None).await;
    let (mut spared_on_b, spared_on_b_id) = cluster.client(1, None).await;
    let (mut spared_on_c, spared_on_c_id) = cluster.client(2, None).await;
    let (mut other_hub_on_c, _) = cluster.client_of("/hubs/other", 2, None).await;
    let rest = cluster.rest(0);

    let path = format!(
        "/api/hubs/chat/:closeConnections?excluded={spared_on_b_id}&excluded={spared_on_c_id}&reason=maintenance"
    );
    close_connections(&rest, &path).await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        expect_closed_by_the_api(client, Some("maintenance")).await;
    }

    // Published after the close on the same channel: an excluded client closed by mistake
    // would end before the marker reaches it.
    rest.send("/api/hubs/chat/:send", "still_open", vec![]).await;
    spared_on_b.expect_invocation("still_open").await;
    spared_on_c.expect_invocation("still_open").await;
    rest.send("/api/hubs/other/:send", "other_still_open", vec![]).await;
    other_hub_on_c.expect_invocation("other_still_open").await;
    rest.wait_for_head("/api/hubs/chat/users/mia", StatusCode::NOT_FOUND, PRESENCE_DEADLINE).await;
}

#[tokio::test]
async fn closing_a_group_closes_its_members_on_every_node_and_no_one_else() {
    let cluster = Cluster::start().await;
    let (mut member_on_b, _) = cluster.client(1, None).await;
    let (mut member_on_c, _) = cluster.client(2, None).await;
    let (mut excluded_member, excluded_id) = cluster.client(2, None).await;
    let (mut outsider_on_b, _) = cluster.client(1, None).await;
    let (mut outsider_on_c, _) = cluster.client(2, None).await;
    for member in [&mut member_on_b, &mut member_on_c, &mut excluded_member] {
        member.invoke_void("JoinGroup", vec![s("doomed")]).await;
    }
    outsider_on_c.invoke_void("JoinGroup", vec![s("elsewhere")]).await;
    let rest = cluster.rest(0);

    // Without a reason the Close has no error.
    close_connections(&rest, &format!("/api/hubs/chat/groups/doomed/:closeConnections?excluded={excluded_id}")).await;
    expect_closed_by_the_api(&mut member_on_b, None).await;
    expect_closed_by_the_api(&mut member_on_c, None).await;

    rest.send("/api/hubs/chat/groups/doomed/:send", "member_still_open", vec![]).await;
    excluded_member.expect_invocation("member_still_open").await;
    rest.send("/api/hubs/chat/:send", "still_open", vec![]).await;
    for client in [&mut excluded_member, &mut outsider_on_b, &mut outsider_on_c] {
        client.expect_invocation("still_open").await;
    }
    rest.send("/api/hubs/chat/groups/elsewhere/:send", "other_group_still_open", vec![]).await;
    outsider_on_c.expect_invocation("other_group_still_open").await;
}

#[tokio::test]
async fn closing_a_user_closes_their_connections_on_both_nodes_and_no_one_else() {
    let cluster = Cluster::start().await;
    let (mut nina_on_b, _) = cluster.client(1, Some("nina")).await;
    let (mut nina_on_c, _) = cluster.client(2, Some("nina")).await;
    let (mut nina_excluded, nina_excluded_id) = cluster.client(2, Some("nina")).await;
    let (mut oscar, _) = cluster.client(2, Some("oscar")).await;
    let (mut anonymous, _) = cluster.client(1, None).await;
    let rest = cluster.rest(0);

    let path = format!("/api/hubs/chat/users/nina/:closeConnections?excluded={nina_excluded_id}&reason=banned");
    close_connections(&rest, &path).await;
    expect_closed_by_the_api(&mut nina_on_b, Some("banned")).await;
    expect_closed_by_the_api(&mut nina_on_c, Some("banned")).await;

    rest.send("/api/hubs/chat/users/nina/:send", "nina_still_open", vec![]).await;
    nina_excluded.expect_invocation("nina_still_open").await;
    rest.send("/api/hubs/chat/:send", "still_open", vec![]).await;
    for client in [&mut nina_excluded, &mut oscar, &mut anonymous] {
        client.expect_invocation("still_open").await;
    }
}

/// Waits until `GET …/groups/{group}/connections` on `rest` lists exactly `expected` (sorted).
async fn wait_for_members(rest: &RestClient, group: &str, expected: &[&str]) {
    let path = format!("/api/hubs/chat/groups/{group}/connections");
    let deadline = Instant::now() + PRESENCE_DEADLINE;
    loop {
        let listed = rest.listed_connections(&path).await;
        if listed == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{group} still lists {listed:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rest` removes the connection `leaver_id` (user `leaver`, in groups `red` and `blue` with
/// `stayer`) from every group: group sends no longer reach it but still reach `stayer`, and
/// presence stops listing it.
async fn leaving_all_groups_is_observed(
    rest: &RestClient,
    leaver: &mut TestClient,
    leaver_id: &str,
    user: &str,
    stayer: &mut TestClient,
    stayer_id: &str,
) {
    for client in [&mut *leaver, &mut *stayer] {
        for group in ["red", "blue"] {
            client.invoke_void("JoinGroup", vec![s(group)]).await;
        }
    }
    let mut both = [leaver_id, stayer_id];
    both.sort();
    for group in ["red", "blue"] {
        rest.wait_for_head(&format!("/api/hubs/chat/users/{user}/groups/{group}"), StatusCode::OK, PRESENCE_DEADLINE)
            .await;
        wait_for_members(rest, group, &both).await;
    }

    let (status, body) =
        rest.call(Method::DELETE, &format!("/api/hubs/chat/connections/{leaver_id}/groups"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for group in ["red", "blue"] {
        let target = format!("to_{group}");
        rest.send(&format!("/api/hubs/chat/groups/{group}/:send"), &target, vec![]).await;
        stayer.expect_invocation(&target).await;
    }
    rest.send("/api/hubs/chat/:send", "marker", vec![]).await;
    expect_marker_without(leaver, "marker", &["to_red", "to_blue"]).await;
    for group in ["red", "blue"] {
        rest.wait_for_head(
            &format!("/api/hubs/chat/users/{user}/groups/{group}"),
            StatusCode::NOT_FOUND,
            PRESENCE_DEADLINE,
        )
        .await;
        wait_for_members(rest, group, &[stayer_id]).await;
        assert_eq!(rest.head(&format!("/api/hubs/chat/groups/{group}")).await, StatusCode::OK, "{stayer_id} stays");
    }
}

#[tokio::test]
async fn a_connection_on_another_node_leaves_every_group_it_was_in() {
    let cluster = Cluster::start().await;
    let (mut paul, paul_id) = cluster.client(2, Some("paul")).await;
    let (mut witness, witness_id) = cluster.client(1, None).await;
    leaving_all_groups_is_observed(&cluster.rest(0), &mut paul, &paul_id, "paul", &mut witness, &witness_id).await;
}

#[tokio::test]
async fn a_connection_on_the_called_node_leaves_every_group_it_was_in() {
    let cluster = Cluster::start().await;
    let (mut quinn, quinn_id) = cluster.client(0, Some("quinn")).await;
    let (mut witness, witness_id) = cluster.client(1, None).await;
    leaving_all_groups_is_observed(&cluster.rest(0), &mut quinn, &quinn_id, "quinn", &mut witness, &witness_id).await;
}

#[tokio::test]
async fn leaving_all_groups_for_a_connection_no_live_node_has_is_404() {
    let cluster = Cluster::start().await;
    let (_on_a, on_a_id) = cluster.client(0, None).await;
    let (_on_c, on_c_id) = cluster.client(2, None).await;
    let rest = cluster.rest(0);
    let ghosts = [
        format!("{}.ghost", node_of(&on_a_id)),
        format!("{}.ghost", node_of(&on_c_id)),
        "gone-node.ghost".to_owned(),
        "no-node".to_owned(),
    ];
    for ghost in ghosts {
        let started = Instant::now();
        let (status, body) =
            rest.call(Method::DELETE, &format!("/api/hubs/chat/connections/{ghost}/groups"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{ghost}: {body}");
        assert_eq!(error_code(&body), "Error.Connection.NotExisted", "{ghost}");
        assert!(started.elapsed() < Duration::from_secs(2), "{ghost}: answered after {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn closes_and_group_leaving_with_bad_names_or_no_token_are_refused_and_change_nothing() {
    let cluster = Cluster::start().await;
    let (mut rita, rita_id) = cluster.client(2, Some("rita")).await;
    rita.invoke_void("JoinGroup", vec![s("g")]).await;
    let rest = cluster.rest(0);
    let bad_request = StatusCode::BAD_REQUEST;

    let bad_names = [
        (Method::POST, "/api/hubs/1x/:closeConnections".to_owned()),
        (Method::POST, "/api/hubs/1x/groups/g/:closeConnections".to_owned()),
        (Method::POST, "/api/hubs/chat/groups//:closeConnections".to_owned()),
        (Method::POST, "/api/hubs/1x/users/rita/:closeConnections".to_owned()),
        (Method::DELETE, format!("/api/hubs/1x/connections/{rita_id}/groups")),
    ];
    for (method, path) in bad_names {
        expect_refusal(&rest, method, &path, "", bad_request, "Error.Request.InvalidName").await;
    }

    let unauthenticated = [
        (Method::POST, "/api/hubs/chat/:closeConnections".to_owned()),
        (Method::POST, "/api/hubs/chat/groups/g/:closeConnections".to_owned()),
        (Method::POST, "/api/hubs/chat/users/rita/:closeConnections".to_owned()),
        (Method::DELETE, format!("/api/hubs/chat/connections/{rita_id}/groups")),
    ];
    for (method, path) in unauthenticated {
        let url = rest.url(&with_version(&path));
        let (status, text) = rest.call_with(method.clone(), &url, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {text}");
        assert_eq!(error_code(&text), "Error.Request.Unauthorized", "{method} {path}");
    }

    // Rita was neither closed nor removed from her group.
    rest.send("/api/hubs/chat/groups/g/:send", "still_a_member", vec![]).await;
    rita.expect_invocation("still_a_member").await;
    let unexpected = rita.take_pending();
    assert!(unexpected.is_none(), "rita got something else: {unexpected:?}");
}
