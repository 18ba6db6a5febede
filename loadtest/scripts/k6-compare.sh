#!/usr/bin/env bash
# The same broadcast scenario driven by the real k6 (loadtest/k6/broadcast.js) and by
# `loadtest broadcast`, against one fresh release gateway each: the harness's own peak RSS per
# connection and CPU time per delivered message.
#
#   loadtest/scripts/k6-compare.sh [SUBSCRIBERS] [RATE] [SECONDS]
#
# Needs `cargo build --release -p gateway -p loadtest` and a k6 binary (K6=path, default: k6 on
# PATH or /var/tmp/hubgate-venv/bin/k6 as scripts/test-all installs it).
set -euo pipefail

subscribers=${1:-1000}
rate=${2:-100}
seconds=${3:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
k6=${K6:-$(command -v k6 || echo /var/tmp/hubgate-venv/bin/k6)}
out=$root/target/loadtest
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

gateway=
# A failed step must not leave a gateway behind.
trap '[ -n "$gateway" ] && kill "$gateway" 2>/dev/null || true' EXIT

start_gateway() {
    portfile=$(mktemp)
    "$bin/gateway" --listen 127.0.0.1:0 --log warn >"$portfile" 2>/dev/null &
    gateway=$!
    for _ in $(seq 1 100); do grep -q '^listening on ' "$portfile" && break; sleep 0.1; done
    url=$(sed -n 's/^listening on //p' "$portfile")
    rm -f "$portfile"
}

# Runs "$@" in the background and samples its RSS every 100 ms; prints "peak_kib cpu_seconds".
measure() {
    "$@" >"$out/compare-last.log" 2>&1 &
    local pid=$! peak=0 ticks=0 rss
    local hz
    hz=$(getconf CLK_TCK)
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        ticks=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo "$ticks")
        sleep 0.1
    done
    wait "$pid" || true
    echo "$peak $(echo "scale=3; $ticks / $hz" | bc)"
}

start_gateway
read -r k6_peak k6_cpu < <(measure "$k6" run --quiet --no-usage-report --summary-export "$out/compare-k6.json" \
    -e HUB_URL="$url/hubs/compare" -e SUBSCRIBERS="$subscribers" -e RATE="$rate" -e SECONDS="$seconds" \
    "$root/loadtest/k6/broadcast.js")
kill "$gateway"; wait "$gateway" 2>/dev/null || true
k6_deliveries=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["metrics"]["deliveries"]["count"]))' "$out/compare-k6.json")

start_gateway
read -r lt_peak lt_cpu < <(measure "$bin/loadtest" broadcast --url "$url/hubs/compare" --subscribers "$subscribers" \
    --rates "$rate" --step-duration "${seconds}s" --warmup 0s --read-buffer 512 --no-stop --json "$out/compare-loadtest.json")
kill "$gateway"; wait "$gateway" 2>/dev/null || true
lt_deliveries=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["steps"] if "steps" in d else d; print(sum(x["deliveries_received"] for x in s))' "$out/compare-loadtest.json")

report() { # name peak_kib cpu_s deliveries
    python3 -c 'import sys
name, peak, cpu, deliveries, conns = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"{name:9} peak RSS {peak/1024:7.1f} MiB = {peak/conns:6.1f} KiB/connection; CPU {cpu:6.2f} s = {cpu/deliveries*1e6:6.2f} µs/delivery ({deliveries} deliveries)")' "$@"
}
report k6 "$k6_peak" "$k6_cpu" "$k6_deliveries" "$((subscribers + 1))"
report loadtest "$lt_peak" "$lt_cpu" "$lt_deliveries" "$((subscribers + 1))"
