//! The fan-out hot path without a cluster (issue 18): encoding a message once for every
//! protocol, pushing it to 1,000 local outbound queues and draining them as the writers do, and
//! the backplane envelope codec. A regression here shows in `cargo bench -p gateway` before it
//! shows in a two-node broadcast. Figures: docs/benchmarks.md ("Hot path").

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gateway::cluster::envelope::{Body, Envelope};
use gateway::cluster::{Audience, Encoded};
use gateway::queue::outbound::Outbound;
use protocol::{HubMessage, Invocation, Value};

/// What the benchmark workshop broadcasts: a `SendToAll` relay of a 64-byte payload.
fn broadcast_message() -> HubMessage {
    let payload = format!("{{\"seq\":1,\"t\":123456789,\"ph\":0,\"pad\":\"{}\"}}", "x".repeat(20));
    HubMessage::Invocation(Invocation::call("msg", vec![Value::from(payload.as_str())]))
}

fn encode_once(c: &mut Criterion) {
    let message = broadcast_message();
    c.bench_function("encode once for JSON and MessagePack", |b| {
        b.iter(|| Encoded::new(black_box(&message)).expect("encodes"));
    });
}

fn fan_out(c: &mut Criterion) {
    const QUEUES: usize = 1000;
    let encoded = Encoded::new(&broadcast_message()).expect("encodes");
    let queues: Vec<Outbound> = (0..QUEUES).map(|_| Outbound::new(512 * 1024)).collect();
    let mut group = c.benchmark_group("fan-out");
    group.throughput(Throughput::Elements(QUEUES as u64));
    group.bench_function("push to 1,000 queues, then each writer takes its batch", |b| {
        let mut batch = Vec::new();
        b.iter(|| {
            for queue in &queues {
                queue.push(encoded.json.clone()).expect("room in the queue");
            }
            for queue in &queues {
                queue.take_queued(&mut batch);
                batch.clear();
            }
        });
    });
    group.finish();
}

fn envelope_codec(c: &mut Criterion) {
    let body = Body::Deliver {
        hub: "chat".into(),
        audience: Audience::Group("room".into()),
        excluded: vec!["node-1.AAAAAAAAAAAAAAAAAAAAAA".into()],
        message: Encoded::new(&broadcast_message()).expect("encodes"),
    };
    let envelope = Envelope::new("node-1", body);
    let bytes: Bytes = envelope.encode();
    let mut group = c.benchmark_group("envelope");
    group.bench_function("encode a delivery", |b| b.iter(|| black_box(&envelope).encode()));
    group.bench_function("decode a delivery", |b| {
        b.iter_batched(|| bytes.clone(), |bytes| Envelope::decode(&bytes).expect("decodes"), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, encode_once, fan_out, envelope_codec);
criterion_main!(benches);
