//! Closing connections (`:closeConnections` for a hub, a group, a user) and removing a
//! connection from every group through the REST API of a three-process cluster on Redis; every
//! request goes to a node that does not host (all of) the clients it addresses.

mod common;

use std::time::{Duration, Instant};

use common::rest::{
    error_code, expect_marker_without, expect_refusal, node_of, with_version, RestClient, RestCluster as Cluster,
    PRESENCE_DEADLINE,
};
use common::{s, Conversation, TestClient};
use reqwest::{Method, StatusCode};

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
