#!/usr/bin/env bash
# Upstream webhook benchmark (docs/benchmarks.md "Upstream webhooks"): the `echo` scenario
# against one node, side by side in one run:
#   relay     the built-in relay hub's Echo (no backend: the gateway's own cost);
#   upstream  the same Echo answered by a trivial Node.js backend over loopback HTTP.
# Each at a fixed rate (round-trip p50/p99) and closed-loop with VUS virtual users (the most
# invocations per second one node sustains).
#
#   loadtest/scripts/upstream-bench.sh [RATE] [VUS] [DURATION]
#
# Needs `cargo build --release -p gateway -p loadtest` and node. Summaries go to
# target/loadtest/upstream-*.json.
set -euo pipefail

rate=${1:-1000}
vus=${2:-64}
duration=${3:-20s}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
out=$root/target/loadtest
mkdir -p "$out"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_and_read VAR PATTERN COMMAND...: starts COMMAND, sets VAR from its first stdout line
# matching `PATTERN(.*)`.
start_and_read() {
    local var=$1 pattern=$2 portfile
    shift 2
    portfile=$(mktemp)
    "$@" >"$portfile" 2>>"$out/upstream-processes.log" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q "^$pattern" "$portfile" && break; sleep 0.1; done
    printf -v "$var" '%s' "$(sed -n "s/^$pattern//p" "$portfile" | head -1)"
    rm -f "$portfile"
    [ -n "${!var}" ] || { echo "upstream-bench: $1 did not start" >&2; exit 1; }
}

run() { # name args...
    local name=$1
    shift
    echo "== $name"
    "$bin/loadtest" run --no-progress --summary-export "$out/upstream-$name.json" "$@" 2>&1 | grep -vE '^\s*$' | tail -30 || true
}

start_and_read backend 'listening on ' node "$root/loadtest/scripts/upstream-echo-backend.mjs"
start_and_read gateway 'listening on ' "$bin/gateway" --listen 127.0.0.1:0 --log warn \
    --upstream "url=http://127.0.0.1:$backend/{hub}/{event};hub=upstream"

for round in 1 2; do
    run "relay-rate-$round" --scenario echo --url "$gateway/hubs/relay" --rate "$rate" --duration "$duration" \
        --pre-allocated-vus 100 --max-vus 400
    run "upstream-rate-$round" --scenario echo --url "$gateway/hubs/upstream" --rate "$rate" --duration "$duration" \
        --pre-allocated-vus 100 --max-vus 400
    run "relay-vus-$round" --scenario echo --url "$gateway/hubs/relay" --vus "$vus" --duration "$duration"
    run "upstream-vus-$round" --scenario echo --url "$gateway/hubs/upstream" --vus "$vus" --duration "$duration"
done
