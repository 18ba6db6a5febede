//! Helpers shared by hubgate's fuzz targets: value comparison that treats floats by their bits
//! (a MessagePack NaN must come back as the same NaN, and `NaN != NaN` under `PartialEq`), and
//! the chunking of one input into the pieces a transport might deliver.

#![forbid(unsafe_code)]

use protocol::message::{Close, Completion, CompletionOutcome, HubMessage, Invocation, StreamItem};
use protocol::Value;

/// Whether two values are the same, floats compared bit for bit.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => same_values(x, y),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| same_value(k1, k2) && same_value(v1, v2))
        }
        _ => a == b,
    }
}

fn same_values(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
}

fn same_invocation(a: &Invocation, b: &Invocation) -> bool {
    a.headers == b.headers
        && a.invocation_id == b.invocation_id
        && a.target == b.target
        && a.stream_ids == b.stream_ids
        && same_values(&a.arguments, &b.arguments)
}

/// Whether two hub messages are the same, floats compared bit for bit.
pub fn same_message(a: &HubMessage, b: &HubMessage) -> bool {
    match (a, b) {
        (HubMessage::Invocation(x), HubMessage::Invocation(y))
        | (HubMessage::StreamInvocation(x), HubMessage::StreamInvocation(y)) => same_invocation(x, y),
        (
            HubMessage::StreamItem(StreamItem { headers: h1, invocation_id: i1, item: v1 }),
            HubMessage::StreamItem(y),
        ) => *h1 == y.headers && *i1 == y.invocation_id && same_value(v1, &y.item),
        (
            HubMessage::Completion(Completion { headers: h1, invocation_id: i1, outcome: o1 }),
            HubMessage::Completion(y),
        ) => {
            *h1 == y.headers
                && *i1 == y.invocation_id
                && match (o1, &y.outcome) {
                    (CompletionOutcome::Value(v1), CompletionOutcome::Value(v2)) => same_value(v1, v2),
                    (o1, o2) => o1 == o2,
                }
        }
        (HubMessage::Close(Close { error: e1, allow_reconnect: r1 }), HubMessage::Close(y)) => {
            *e1 == y.error && *r1 == y.allow_reconnect
        }
        _ => a == b,
    }
}

/// Splits `data` into consecutive pieces whose sizes (1 to 64 bytes, or 0 for an empty push)
/// come from `sizes`, cycling; the pieces cover `data` exactly.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut index = 0;
    // Sizes that are all 0 would never advance.
    let sizes = if sizes.iter().all(|size| size % 65 == 0) { &[1][..] } else { sizes };
    while !rest.is_empty() {
        let size = usize::from(sizes[index % sizes.len()] % 65);
        index += 1;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// Splits an input at its first `\n`: the line (without the newline) and the rest.
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A gateway node built without a network (in-memory backplane), driven through its axum
/// router with `tower::ServiceExt::oneshot`. Its runtime's clock is paused and advances by
/// itself whenever every task waits for time, so a long poll or a timeout costs no wall time.
pub struct Node {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

/// What a request got back: the status, and the body unless it is an event stream.
#[derive(Debug)]
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl Node {
    /// Starts a node with `config` (panics if it does not start: the target is broken then).
    pub fn start(config: gateway::Config) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime");
        let backplane = std::sync::Arc::new(backplane::MemoryBackplane::standalone());
        let gateway = runtime.block_on(gateway::Gateway::new(config, backplane)).expect("the gateway starts");
        let router = gateway.router();
        Self { runtime, router }
    }

    /// Sends one request and reads the answer (the body of an event stream is not read: it
    /// never ends). Panics if no answer comes within 10 minutes of (paused) gateway time.
    pub fn call(&self, request: axum::http::Request<axum::body::Body>) -> Answer {
        self.try_call(request).expect("an answer within 10 minutes of gateway time")
    }

    /// Like [`Node::call`], `None` when no answer comes within 10 minutes of (paused) gateway
    /// time; the request is dropped then, as a client that gives up would.
    pub fn try_call(&self, request: axum::http::Request<axum::body::Body>) -> Option<Answer> {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let limit = std::time::Duration::from_secs(600);
            let response = tokio::time::timeout(limit, router.oneshot(request)).await.ok()?;
            let response = response.unwrap_or_else(|never| match never {});
            let status = response.status();
            let content_type = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = if content_type.as_deref() == Some("text/event-stream") {
                bytes::Bytes::new()
            } else {
                let collected = tokio::time::timeout(limit, response.into_body().collect()).await.ok()?;
                collected.expect("a readable body").to_bytes()
            };
            Some(Answer { status, content_type, body })
        })
    }
}

/// `text` percent-encoded for a query value.
pub fn query_value(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
