#!/usr/bin/env bash
# How the cost of a broadcast grows with fan-out and nodes (docs/benchmarks.md "Scale curve"):
# for each node count and subscriber count, one `SendToAll` broadcast run of the benchmark
# workshop's driver (../shared/bench) against N gateway nodes on one fresh redis-server, the
# subscribers spread round robin over the nodes, one publisher on node 1, 64-byte payloads.
# Prints a table of gateway CPU per delivery and latency, writes it as CSV, and draws
# docs/scale-curve-p$P.png (loadtest/scripts/plot-scale-curve.py).
#
#   loadtest/scripts/scale-curve.sh [NODES] [SUBSCRIBERS]
#     NODES        comma list, default 1,2,3
#     SUBSCRIBERS  comma list, default 1000,5000,10000
#   P=msg/s (default 100), T=publish seconds (default 10), ROUNDS (default 1),
#   GATEWAY=path (default $CARGO_TARGET_DIR/release/gateway or target/release/gateway),
#   BENCH=path to the workshop (default ../shared/bench, set up once with its setup.sh),
#   BENCH_WORK (default /var/tmp/hubgate-bench), OUT=CSV path (default $BENCH_WORK/scale-curve.csv)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
node_counts=${1:-1,2,3}
subscriber_counts=${2:-1000,5000,10000}
rate=${P:-100}
secs=${T:-10}
rounds=${ROUNDS:-1}
bench=${BENCH:-$root/../shared/bench}
work=${BENCH_WORK:-/var/tmp/hubgate-bench}
gateway=${GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/release/gateway}
driver=$work/target/release/bench-driver
out=${OUT:-$work/scale-curve.csv}
results=$work/results/scale
redis_port=63795
first_port=7301
[ -x "$gateway" ] || { echo "no gateway binary at $gateway (cargo build --release -p gateway)" >&2; exit 2; }
[ -x "$driver" ] || { echo "no driver at $driver: run $bench/setup.sh first" >&2; exit 2; }
mkdir -p "$results"
ulimit -n "$(ulimit -Hn)"

pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

wait_port() { # PORT: until it accepts, at most 30 s
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        ((SECONDS < deadline)) || { echo "port $1 did not open" >&2; return 1; }
        sleep 0.1
    done
}

run_one() { # NODES SUBSCRIBERS ROUND
    local nodes=$1 subscribers=$2 round=$3 name="scale-n$1-s$2-r$3"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$results/$name-redis.log" 2>&1 &
    pids+=($!)
    local args=(--pid "redis=$!")
    wait_port "$redis_port"
    for n in $(seq 1 "$nodes"); do
        local port=$((first_port + n - 1))
        "$gateway" --listen "127.0.0.1:$port" --backplane redis --redis-url "redis://127.0.0.1:$redis_port" \
            --log warn >"$results/$name-node$n.log" 2>&1 &
        pids+=($!)
        args+=(--pid "node$n=$!" --url "ws://127.0.0.1:$port/hubs/chat")
    done
    for n in $(seq 1 "$nodes"); do wait_port $((first_port + n - 1)); done
    "$driver" --protocol signalr --scenario broadcast "${args[@]}" \
        --publish-url "ws://127.0.0.1:$first_port/hubs/chat" -s "$subscribers" -p "$rate" -t "$secs" \
        --payload-size 64 --signalr-method SendToAll --signalr-args '["msg","$payload"]' --signalr-target msg \
        --label "$name" --max-run-secs 300 --json-out "$results/$name.json" >/dev/null 2>"$results/$name-driver.txt"
    stop_all
    echo "$name" >&2
}

for round in $(seq 1 "$rounds"); do
    for nodes in ${node_counts//,/ }; do
        for subscribers in ${subscriber_counts//,/ }; do
            run_one "$nodes" "$subscribers" "$round"
        done
    done
done

python3 - "$results" "$out" "$node_counts" "$subscriber_counts" "$rounds" <<'PY'
import json, sys, statistics
results, out, node_counts, subscriber_counts, rounds = sys.argv[1:]
rows = []
for nodes in node_counts.split(","):
    for subs in subscriber_counts.split(","):
        runs = [json.load(open(f"{results}/scale-n{nodes}-s{subs}-r{r}.json")) for r in range(1, int(rounds) + 1)]
        def gateway_cpu(run):
            return sum(v["cpu_s_measured"] for k, v in run["servers"].items() if k.startswith("node"))
        us = statistics.mean(gateway_cpu(r) / max(r["received"], 1) * 1e6 for r in runs)
        p50 = statistics.mean(r["latency_ms"]["p50"] for r in runs)
        p99 = statistics.mean(r["latency_ms"]["p99"] for r in runs)
        lost = sum(r["lost"] for r in runs)
        per_s = statistics.mean(r["delivered_per_s"] for r in runs)
        rows.append((int(nodes), int(subs), us, p50, p99, per_s, lost))
with open(out, "w") as f:
    f.write("nodes,subscribers,us_per_delivery,p50_ms,p99_ms,delivered_per_s,lost\n")
    for row in rows:
        f.write("%d,%d,%.2f,%.1f,%.1f,%.0f,%d\n" % row)
print("| nodes | subscribers | gateway CPU µs per delivery | p50 ms | p99 ms | deliveries/s | lost |")
print("|---|---|---|---|---|---|---|")
for row in rows:
    print("| %d | %d | %.2f | %.1f | %.1f | %.0f | %d |" % row)
PY
echo "CSV: $out" >&2
"$root/loadtest/scripts/plot-scale-curve.py" "$out" "$root/docs/scale-curve-p$rate.png" "$rate"
