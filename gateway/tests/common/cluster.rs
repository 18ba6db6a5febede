//! Cross-node scenarios, run against any set of gateway nodes that share a backplane: several
//! in-process gateways on one `MemoryBus`, or gateway processes on a real Redis.
//!
//! Every client records what it receives; at the end one last broadcast marks the end of the
//! traffic, and each client's record must equal exactly what it should have received: nothing
//! missing, nothing twice, nothing meant for others.

use super::Conversation;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use gateway::hub::{Hub, HubContext, HubError};
use protocol::{HubMessage, Value};

use super::{s, TestClient};

pub const SECRET: &str = "cluster-secret";
const HUB: &str = "/hubs/chat";

/// A token for `user`, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    let claims = serde_json::json!({ "sub": user, "exp": jsonwebtoken::get_current_timestamp() + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

struct Member {
    name: &'static str,
    client: TestClient,
    expected: Vec<(String, Vec<Value>)>,
}

impl Member {
    fn id(&self) -> String {
        self.client.connection_id.clone().expect("negotiated id")
    }
}

/// Runs every relay send across the nodes (at least two; clients are spread over the first three)
/// and checks exactly-once delivery to exactly the intended connections.
pub async fn relay_sends_reach_exactly_the_intended_connections(nodes: &[SocketAddr]) {
    assert!(nodes.len() >= 2, "a cluster scenario needs at least two nodes");
    let node = |i: usize| nodes[i % nodes.len()];
    let mut m: BTreeMap<&'static str, Member> = BTreeMap::new();
    for (name, at, user) in
        [("a0", 0, Some("alice")), ("a1", 1, Some("alice")), ("b", 1, Some("bob")), ("c", 2, None), ("d", 0, None)]
    {
        let token = user.map(token);
        let client = TestClient::connect_at(node(at), HUB, token.as_deref()).await;
        m.insert(name, Member { name, client, expected: Vec::new() });
    }
    let everyone = ["a0", "a1", "b", "c", "d"];

    send(&mut m, "c", "SendToAll", vec![s("t_all"), Value::from(1)], &everyone).await;
    send(&mut m, "a0", "SendToOthers", vec![s("t_others")], &["a1", "b", "c", "d"]).await;

    for (who, group) in [("a0", "room"), ("b", "room"), ("c", "room"), ("d", "*"), ("b", "*"), ("c", "salle-é-🎉")] {
        member(&mut m, who).invoke_void("JoinGroup", vec![s(group)]).await;
    }
    send(&mut m, "d", "SendToGroup", vec![s("room"), s("t_group")], &["a0", "b", "c"]).await;
    send(&mut m, "b", "SendToOthersInGroup", vec![s("room"), s("t_group_others")], &["a0", "c"]).await;
    send(&mut m, "a0", "SendToGroup", vec![s("*"), s("t_star")], &["d", "b"]).await;
    send(&mut m, "d", "SendToGroup", vec![s("salle-é-🎉"), s("t_unicode")], &["c"]).await;
    send(&mut m, "b", "SendToUser", vec![s("alice"), s("t_user")], &["a0", "a1"]).await;
    let c_id = m["c"].id();
    let d_id = m["d"].id();
    send(&mut m, "d", "SendToConnection", vec![s(&c_id), s("t_conn")], &["c"]).await;
    send(&mut m, "c", "SendToConnection", vec![s(&d_id), s("t_conn_back")], &["d"]).await;
    send(&mut m, "a1", "SendToConnection", vec![s(&format!("{d_id}x")), s("t_nobody")], &[]).await;

    member(&mut m, "b").invoke_void("LeaveGroup", vec![s("room")]).await;
    send(&mut m, "a0", "SendToGroup", vec![s("room"), s("t_after_leave")], &["a0", "c"]).await;

    member(&mut m, "a1").invoke_void("SendToAll", vec![s("end")]).await;
    for member in m.values_mut() {
        member.client.expect_invocation("end").await;
        let received = drain_invocations(&mut member.client).await;
        let mut expected = member.expected.clone();
        expected.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(received, expected, "what {} received", member.name);
    }
}

fn member<'a>(m: &'a mut BTreeMap<&'static str, Member>, name: &str) -> &'a mut TestClient {
    &mut m.get_mut(name).expect("member").client
}

/// Makes `sender` invoke a relay method whose arguments after the addressing ones are
/// `[target, sender name]`; records who must receive it.
async fn send(
    m: &mut BTreeMap<&'static str, Member>,
    sender: &str,
    method: &str,
    mut args: Vec<Value>,
    to: &[&'static str],
) {
    args.push(s(sender));
    let target =
        args.iter().find_map(|a| a.as_str().filter(|t| t.starts_with("t_")).map(str::to_owned)).expect("target");
    let payload_start = args.iter().position(|a| a.as_str() == Some(target.as_str())).expect("target position") + 1;
    let payload = args[payload_start..].to_vec();
    member(m, sender).invoke_void(method, args).await;
    for name in to {
        m.get_mut(name).expect("recipient").expected.push((target.clone(), payload.clone()));
    }
}

/// Every invocation received so far, as (target, arguments), sorted by target.
async fn drain_invocations(client: &mut TestClient) -> Vec<(String, Vec<Value>)> {
    let mut received = Vec::new();
    while let Some(message) = client.take_pending() {
        if let HubMessage::Invocation(invocation) = message {
            received.push((invocation.target, invocation.arguments));
        }
    }
    received.sort_by(|x, y| x.0.cmp(&y.0));
    received
}

/// `Enlist`/`Discharge` change another connection's groups; `Shout` sends to a group.
pub fn app_hub() -> Hub {
    Hub::builder()
        .method("Enlist", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().add(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .method("Discharge", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().remove(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .method("Shout", |ctx: HubContext, (group, text): (String, String)| async move {
            ctx.clients().group(&group).send("shout", (text,)).await?;
            Ok::<_, HubError>(())
        })
        .build()
}

/// With the app hub mounted at `/app` on both nodes: a group change for a connection on the
/// other node completes only once that node has applied it.
pub async fn remote_group_changes_complete_after_the_remote_node_applied_them(
    here_addr: SocketAddr,
    there_addr: SocketAddr,
) {
    let mut here = TestClient::connect_at(here_addr, "/app", None).await;
    let mut there = TestClient::connect_at(there_addr, "/app", None).await;
    let there_id = there.connection_id.clone().unwrap();
    here.invoke_void("Enlist", vec![s(&there_id), s("team")]).await;
    // The add is in effect on the remote node as soon as the call returned.
    here.invoke_void("Shout", vec![s("team"), s("hello")]).await;
    assert_eq!(there.expect_invocation("shout").await.arguments, vec![s("hello")]);

    here.invoke_void("Discharge", vec![s(&there_id), s("team")]).await;
    here.invoke_void("Enlist", vec![s(here.connection_id.as_deref().unwrap()), s("team")]).await;
    here.invoke_void("Shout", vec![s("team"), s("after")]).await;
    assert_eq!(here.expect_invocation("shout").await.arguments, vec![s("after")]);
    there.invoke_void("Enlist", vec![s(&there_id), s("marker")]).await;
    here.invoke_void("Shout", vec![s("marker"), s("m")]).await;
    there.expect_invocation("shout").await;
    there.assert_no_invocation("shout").await;
}

/// With the app hub mounted at `/app`: changing the groups of a connection that exists nowhere
/// fails within two seconds, whether its node exists or not.
pub async fn group_changes_for_missing_connections_fail_fast(here_addr: SocketAddr, there_addr: SocketAddr) {
    let mut here = TestClient::connect_at(here_addr, "/app", None).await;
    let there = TestClient::connect_at(there_addr, "/app", None).await;
    let there_node = there.connection_id.clone().unwrap().split('.').next().unwrap().to_owned();
    for ghost in [format!("{there_node}.ghost"), "gone-node.ghost".to_owned(), "no-node-at-all".to_owned()] {
        let started = Instant::now();
        let error = here.invoke_error("Enlist", vec![s(&ghost), s("team")]).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{ghost}: took {:?}", started.elapsed());
        assert_eq!(
            error,
            format!("An unexpected error occurred invoking 'Enlist' on the server. HubException: Connection '{ghost}' does not exist."),
        );
    }
}
