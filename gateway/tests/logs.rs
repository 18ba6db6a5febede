//! What the `gateway` binary logs: JSON lines whose events inside a connection carry that
//! connection's id, transport, protocol and user, and never a client's token, not even from
//! URLs (clients that cannot set headers send it as `?access_token=`).

mod common;

use common::http::HttpClient;
use common::processes::GatewayProcess;
use common::{client_token, s, Conversation, TestClient, DEADLINE};
use protocol::Protocol;
use serde_json::Value;

const HUB: &str = "/hubs/logs";
const SECRET: &str = "a-secret-long-enough-for-hs256-signing";

/// The fields of the connection span of a JSON log line, if it was logged inside one.
fn connection_span(line: &Value) -> Option<&serde_json::Map<String, Value>> {
    let spans = line["spans"].as_array()?;
    spans.iter().filter_map(Value::as_object).find(|span| span.get("name") == Some(&Value::from("connection")))
}

#[tokio::test]
async fn json_logs_carry_connection_fields_and_never_the_access_or_connection_token() {
    let token = client_token(SECRET, "alice");
    let args: Vec<String> = ["--log-format", "json", "--log", "debug", "--jwt-secret", SECRET, "--poll-timeout", "1s"]
        .map(str::to_owned)
        .to_vec();
    let mut node = GatewayProcess::start_capturing_logs(&args).await;
    let mut websocket = TestClient::connect_at(node.addr, HUB, Some(&token)).await;
    let with_token = format!("{HUB}?access_token={token}");
    let mut polling = HttpClient::long_polling(&node, &with_token, Protocol::Json).await;
    polling.invoke_void("JoinGroup", vec![s("room")]).await;
    websocket.invoke_void("SendToGroup", vec![s("room"), s("said"), s("hello")]).await;
    polling.expect_invocation("said").await;

    node.terminate();
    websocket.expect_close().await;
    polling.expect_close().await;
    assert!(node.exit_status(DEADLINE).await.success());
    let logs = node.all_logs().await;

    let leaks: Vec<&String> = logs.iter().filter(|line| line.contains(&token)).collect();
    assert!(leaks.is_empty(), "the token appears in the logs: {leaks:#?}");
    // The connection token of the long-polling connection (its `?id=`) is a secret as well:
    // only its node part may be logged.
    let (node_part, secret) = polling.token.rsplit_once('.').expect("a node-named connection token");
    let leaks: Vec<&String> = logs.iter().filter(|line| line.contains(secret)).collect();
    assert!(leaks.is_empty(), "the connection token appears in the logs: {leaks:#?}");
    assert!(
        logs.iter().any(|line| line.contains(&format!("id={node_part}.<redacted>"))),
        "polls are logged with their connection token redacted to its node"
    );
    assert!(
        logs.iter().any(|line| line.contains("access_token=<redacted>")),
        "request URLs are logged, with the token redacted"
    );
    let lines: Vec<Value> =
        logs.iter().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    for transport in ["WebSockets", "LongPolling"] {
        let span = lines
            .iter()
            .filter_map(connection_span)
            .find(|span| span.get("transport") == Some(&Value::from(transport)) && span.contains_key("protocol"))
            .unwrap_or_else(|| panic!("no event logged inside a {transport} connection after its handshake"));
        assert!(span.get("conn_id").and_then(Value::as_str).is_some_and(|id| !id.is_empty()), "{span:?}");
        assert_eq!(span.get("protocol"), Some(&Value::from("json")), "{span:?}");
        assert_eq!(span.get("user"), Some(&Value::from("alice")), "{span:?}");
    }
}
