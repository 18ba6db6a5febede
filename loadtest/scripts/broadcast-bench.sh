#!/usr/bin/env bash
# Cross-node broadcast benchmark: one Redis, two gateways on it, `loadtest broadcast` against
# both (subscribers split round-robin, the publisher on the first node).
#
#   loadtest/scripts/broadcast-bench.sh [extra loadtest broadcast flags...]
#
# Builds nothing: run `cargo build --release -p gateway -p loadtest` first. GATEWAY=path
# measures another gateway binary; GATEWAY_ARGS adds flags to both gateways (e.g.
# GATEWAY_ARGS="--flush-delay 10ms"). NAME names the output files (default broadcast):
# target/loadtest/NAME.json, NAME.txt (the table), and the gateways' and Redis's logs beside
# them. Everything started here is stopped on exit.
#
# The machine is shared: before starting, the script waits (up to QUIET_WAIT seconds, default
# 900) until the machine's CPUs are less than QUIET_PERCENT (default 15) percent busy over two
# seconds, so that other work does not distort the figures. The harness reports, per step,
# how busy the machine was and how much of that was processes it does not measure (other%).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
gateway_bin=${GATEWAY:-$bin/gateway}
name=${NAME:-broadcast}
out=$root/target/loadtest
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

# Busy percentage of all CPUs over two seconds, from /proc/stat.
machine_busy() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 2
    read -r -a b < <(grep '^cpu ' /proc/stat)
    local total=0 idle i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
deadline=$((SECONDS + ${QUIET_WAIT:-900}))
while busy=$(machine_busy) && [ "$busy" -ge "${QUIET_PERCENT:-15}" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "broadcast-bench: machine still ${busy}% busy; measuring anyway (see other% per step)" >&2
        break
    fi
    echo "broadcast-bench: machine ${busy}% busy with other work; waiting" >&2
    sleep 10
done

pids=()
tmp=$(mktemp -d)
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Redis on a free port, in memory only.
redis_pid=
for _ in $(seq 1 20); do
    redis_port=$((20000 + RANDOM % 20000))
    port_in_use "$redis_port" && continue
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile "$out/$name-redis.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 1 50); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    kill "$redis_pid" 2>/dev/null || true
    redis_pid=
done
[ -n "$redis_pid" ] || { echo "broadcast-bench: redis-server did not start" >&2; exit 1; }

# Two gateways on it; each prints `listening on http://HOST:PORT` on stdout.
urls=()
gateway_pids=()
for node in 1 2; do
    portfile=$tmp/gateway-$node.out
    # shellcheck disable=SC2086 # GATEWAY_ARGS is a list of flags
    "$gateway_bin" --listen 127.0.0.1:0 --backplane redis --redis-url "redis://127.0.0.1:$redis_port" \
        --log warn ${GATEWAY_ARGS:-} >"$portfile" 2>"$out/$name-gateway-$node.log" &
    pid=$!
    pids+=("$pid")
    gateway_pids+=("$pid")
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$portfile" && break
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$portfile")
    [ -n "$url" ] || { echo "broadcast-bench: gateway $node did not start" >&2; exit 1; }
    urls+=("$url")
done
# Both nodes must be on the backplane before anyone subscribes.
for url in "${urls[@]}"; do
    for _ in $(seq 1 100); do
        curl -fs "$url/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
done
sleep 1

echo "== redis pid $redis_pid on port $redis_port; gateways: ${urls[0]} (pid ${gateway_pids[0]}), ${urls[1]} (pid ${gateway_pids[1]})"
echo "== gateway flags: ${GATEWAY_ARGS:-(defaults)}"
"$bin/loadtest" broadcast \
    --url "${urls[0]}/hubs/bench" --url "${urls[1]}/hubs/bench" \
    --server-pid "${gateway_pids[0]}" --server-pid "${gateway_pids[1]}" --redis-pid "$redis_pid" \
    --json "$out/$name.json" "$@" | tee "$out/$name.txt"
