#!/usr/bin/env bash
# The figures of docs/benchmarks.md "loadtest run" section, with release builds:
#   1. echo at a fixed rate (p99 round trip), one node;
#   2. connection churn (connections established per second), one node;
#   3. broadcast step-up on one node (memory backplane);
#   4. broadcast step-up on two nodes over Redis (publisher on node A, subscribers on both);
#   5. the most connections one harness process holds (fan-out to them at 10 msg/s).
#
#   loadtest/scripts/run-bench.sh [SUBSCRIBERS] [RATES] [STEP] [BIG]
#
# Needs `cargo build --release -p gateway -p loadtest` and redis-server. Summaries go to
# target/loadtest/run-*.json.
set -euo pipefail

subscribers=${1:-1000}
rates=${2:-100,150,200,250,300,400}
step=${3:-10s}
big=${4:-19800}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
out=$root/target/loadtest
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_gateway VAR ARGS...: starts a release gateway on a free port, sets VAR to its URL.
start_gateway() {
    local var=$1 portfile
    shift
    portfile=$(mktemp)
    "$bin/gateway" --listen 127.0.0.1:0 --log warn "$@" >"$portfile" 2>>"$out/run-gateways.log" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q '^listening on ' "$portfile" && break; sleep 0.1; done
    printf -v "$var" '%s' "$(sed -n 's/^listening on //p' "$portfile")"
    rm -f "$portfile"
}

stop_all() { cleanup; pids=(); }

run() { # name args...
    local name=$1
    shift
    echo "== $name"
    "$bin/loadtest" run --no-progress --summary-export "$out/run-$name.json" "$@" 2>&1 | grep -vE '^\s*$' | tail -40 || true
}

start_gateway one
run echo --scenario echo --url "$one/hubs/bench" --rate 1000 --duration 20s --pre-allocated-vus 100 --max-vus 200 \
    --threshold 'invoke_rtt=p(99)<500'
run churn --scenario churn --url "$one/hubs/bench" --vus 20 --duration 20s
run broadcast-one-node --scenario broadcast --url "$one/hubs/bench" --subscribers "$subscribers" \
    --step-up "$rates" --step-duration "$step" --pre-allocated-vus 10 --max-vus 20 --threshold 'delivery_latency=p(99)<500'
stop_all

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_gateway a --backplane redis --redis-url "redis://127.0.0.1:$redis_port"
start_gateway b --backplane redis --redis-url "redis://127.0.0.1:$redis_port"
run broadcast-two-nodes --scenario broadcast --url "$a/hubs/bench" --subscriber-url "$a/hubs/bench" \
    --subscriber-url "$b/hubs/bench" --subscribers "$subscribers" --step-up "$rates" --step-duration "$step" \
    --pre-allocated-vus 10 --max-vus 20 --threshold 'delivery_latency=p(99)<500'
stop_all

start_gateway one
run most-connections --scenario broadcast --url "$one/hubs/bench" --subscribers "$big" --rate 10 --duration 20s \
    --pre-allocated-vus 1 --max-vus 2
