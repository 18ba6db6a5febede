#!/usr/bin/env bash
# hubgate beside the peers of ../shared/bench, interleaved: for each round, each rate, each
# configuration one broadcast run (2 nodes on one Redis, S subscribers, one publisher, 64 B),
# then a table of gateway CPU per delivery and latency, means over the rounds
# (docs/benchmarks.md "Adaptive write coalescing").
#
#   loadtest/scripts/peer-bench.sh [ROUNDS] [RATES] [CONFIGS]
#     ROUNDS   default 3
#     RATES    msg/s, comma list, default 100,10,1 (T=10 s at 100 and 10 msg/s, 30 s at 1)
#     CONFIGS  comma list of: hubgate (defaults), hubgate-fdN (--flush-delay Nms, e.g.
#              hubgate-fd0), socketioxide, raw-ref; default hubgate,hubgate-fd0,socketioxide
#   GATEWAY=path (default $CARGO_TARGET_DIR/release/gateway or target/release/gateway),
#   BENCH=path to the bench workshop (default ../shared/bench), S=subscribers (default 1000),
#   BENCH_WORK (default /var/tmp/hubgate-bench), TAG (prefix of result names, default pb).
# Needs the workshop set up once: $BENCH/setup.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-3}
rates=${2:-100,10,1}
configs=${3:-hubgate,hubgate-fd0,socketioxide}
bench=${BENCH:-$root/../shared/bench}
gateway=${GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/release/gateway}
subscribers=${S:-1000}
tag=${TAG:-pb}
export BENCH_WORK=${BENCH_WORK:-/var/tmp/hubgate-bench}
[ -x "$gateway" ] || { echo "no gateway binary at $gateway (cargo build --release -p gateway)" >&2; exit 2; }

run_one() { # config rate round
    local config=$1 rate=$2 round=$3 secs=10 extra=""
    [ "$rate" -le 1 ] && secs=30
    local name="$tag-$config-p$rate-r$round"
    case $config in
        hubgate | hubgate-fd*)
            [ "$config" != hubgate ] && extra="--flush-delay ${config#hubgate-fd}ms"
            PEER=hubgate PROTOCOL=signalr URL_PATH=/hubs/chat SIGNALR_METHOD=SendToAll TAG="$name" \
                PEER_CMD="$gateway --listen 127.0.0.1:\$PORT --backplane redis --redis-url \$REDIS_URL --log warn $extra" \
                SCENARIO=broadcast S="$subscribers" P="$rate" T="$secs" bash "$bench/run-peers.sh" >/dev/null
            ;;
        *)
            PEER=$config TAG="$name" SCENARIO=broadcast S="$subscribers" P="$rate" T="$secs" \
                bash "$bench/run-peers.sh" >/dev/null
            ;;
    esac
    echo "$name"
}

for round in $(seq 1 "$rounds"); do
    for rate in ${rates//,/ }; do
        for config in ${configs//,/ }; do
            run_one "$config" "$rate" "$round"
        done
    done
done

python3 - "$BENCH_WORK/results" "$tag" "$rounds" "$rates" "$configs" <<'PY'
import glob, json, sys
results, tag, rounds, rates, configs = sys.argv[1:]
print("\n| config | msg/s | µs per delivery (runs) | mean | p50 ms | p99 ms (runs) | mean p99 | lost |")
print("|---|---|---|---|---|---|---|---|")
for rate in rates.split(","):
    for config in configs.split(","):
        runs = []
        for path in sorted(glob.glob(f"{results}/*-{tag}-{config}-p{rate}-r*.json")):
            d = json.load(open(path))
            cpu = sum(v.get("cpu_s_measured", 0) for k, v in d["servers"].items() if k.startswith("node"))
            runs.append((cpu / max(d["received"], 1) * 1e6, d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["lost"]))
        if not runs:
            continue
        mean = lambda xs: sum(xs) / len(xs)
        us = ", ".join(f"{r[0]:.2f}" for r in runs)
        p99 = ", ".join(f"{r[2]:.1f}" for r in runs)
        print(f"| {config} | {rate} | {us} | {mean([r[0] for r in runs]):.2f} | {mean([r[1] for r in runs]):.1f} | {p99} | {mean([r[2] for r in runs]):.1f} | {sum(r[3] for r in runs)} |")
PY
