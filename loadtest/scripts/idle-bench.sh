#!/usr/bin/env bash
# Idle-connection memory benchmark: a fresh gateway per run, then `loadtest idle` against it.
#
#   loadtest/scripts/idle-bench.sh [CONNECTIONS] [RUNS] [extra loadtest idle flags...]
#
# Builds nothing: run `cargo build --release -p gateway -p loadtest` first. GATEWAY=path
# measures another gateway binary; GATEWAY_ARGS adds flags to it. Environment variables set
# for this script (e.g. MALLOC_ARENA_MAX=2) reach the gateway. Summaries are written to
# target/loadtest/idle-CONNECTIONS-RUN.json, gateway logs beside them.
set -euo pipefail

connections=${1:-10000}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
gateway_bin=${GATEWAY:-$bin/gateway}
out=$root/target/loadtest
mkdir -p "$out"

# Each process needs one descriptor per connection, plus a few.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((connections + 100)) ]; then
    echo "idle-bench: ulimit -n is $(ulimit -n), too low for $connections connections" >&2
    exit 1
fi

for run in $(seq 1 "$runs"); do
    portfile=$(mktemp)
    # shellcheck disable=SC2086 # GATEWAY_ARGS is a list of flags
    "$gateway_bin" --listen 127.0.0.1:0 --log warn ${GATEWAY_ARGS:-} >"$portfile" 2>"$out/gateway-$connections-$run.log" &
    gateway=$!
    trap 'kill $gateway 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$portfile" && break
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$portfile")
    rm -f "$portfile"
    [ -n "$url" ] || { echo "idle-bench: gateway did not start" >&2; exit 1; }
    sleep 1
    echo "== run $run/$runs: $connections connections, gateway pid $gateway at $url"
    "$bin/loadtest" idle --url "$url/hubs/chat" --connections "$connections" --server-pid "$gateway" \
        --json "$out/idle-$connections-$run.json" "$@"
    kill "$gateway"
    wait "$gateway" 2>/dev/null || true
    trap - EXIT
    sleep 2
done
