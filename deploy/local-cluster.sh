#!/usr/bin/env bash
# A hubgate cluster as plain processes on loopback, without Docker: redis-server, N stateless
# gateways on the Redis backplane (one cluster secret, each with its --advertise-url), nginx as
# the load balancer (plain round robin, no affinity, see deploy/local/nginx.conf.template) and
# Prometheus scraping every gateway's admin port.
#
#   deploy/local-cluster.sh up       start everything, wait until it is ready, print the URLs
#   deploy/local-cluster.sh status   each process, its pid, port and health
#   deploy/local-cluster.sh down     stop exactly what `up` started
#
# Settings (environment):
#   GATEWAYS=3                        number of gateways, node ids gw1..gwN
#   HUBGATE_BIN                       gateway binary; default target/release/gateway (under
#                                     CARGO_TARGET_DIR when set), built with cargo if missing
#   HUBGATE_CLUSTER_DIR               state: pid files, logs, generated configs
#                                     (default /tmp/hubgate-cluster)
#   LB_PORT=18080                     nginx, the one URL clients use
#   GATEWAY_PORT=18081                first gateway's port; gwN listens on GATEWAY_PORT+N-1
#   ADMIN_PORT=19465                  first gateway's admin port (/metrics, /healthz, /readyz)
#   REDIS_PORT=16379
#   PROMETHEUS_PORT=19090
#   UP_TIMEOUT=30                     seconds `up` waits for everything to become ready
#   HUBGATE_CLUSTER_SECRET            the secret every gateway signs connection tokens with
#                                     (at least 16 characters); default: a random one per `up`,
#                                     handed to the gateways in their environment (not on the
#                                     command line, where any local user could read it)
# Other HUBGATE_* variables (e.g. HUBGATE_JWT_SECRET) reach every gateway as its settings.
#
# nginx, Prometheus, Redis and curl come from Debian packages, installed with apt-get where
# missing; a service the package starts on install is stopped and disabled, since this script
# runs its own processes with its own configs. Everything listens on 127.0.0.1 only.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${HUBGATE_CLUSTER_DIR:-/tmp/hubgate-cluster}
run_dir=$state/run
log_dir=$state/logs

die() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- settings ---------------------------------------------------------------------------------

# The settings `up` used are saved, so `status` and `down` act on that cluster whatever the
# environment says now.
load_settings() {
    if [ -f "$state/cluster.env" ]; then
        # shellcheck source=/dev/null
        . "$state/cluster.env"
        return
    fi
    gateways=${GATEWAYS:-3}
    lb_port=${LB_PORT:-18080}
    gateway_port=${GATEWAY_PORT:-18081}
    admin_port=${ADMIN_PORT:-19465}
    redis_port=${REDIS_PORT:-16379}
    prometheus_port=${PROMETHEUS_PORT:-19090}
    for value in "$gateways" "$lb_port" "$gateway_port" "$admin_port" "$redis_port" "$prometheus_port"; do
        [[ $value =~ ^[0-9]+$ ]] || die "GATEWAYS and the *_PORT variables must be numbers, got '$value'"
    done
    [ "$gateways" -ge 1 ] || die "GATEWAYS must be at least 1"
}

save_settings() {
    cat >"$state/cluster.env" <<EOF
gateways=$gateways
lb_port=$lb_port
gateway_port=$gateway_port
admin_port=$admin_port
redis_port=$redis_port
prometheus_port=$prometheus_port
EOF
}

node_port() { echo $((gateway_port + $1 - 1)); }
node_admin_port() { echo $((admin_port + $1 - 1)); }

# Process names in start order; `down` stops them in reverse.
components() {
    echo redis
    for i in $(seq 1 "$gateways"); do echo "gw$i"; done
    echo nginx
    echo prometheus
}

# --- packages ---------------------------------------------------------------------------------

ensure_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v curl >/dev/null || missing+=(curl)
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing ${missing[*]} (apt-get)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Packaged services may have started on install; they are not ours to use and would hold
    # ports (80, 9090, 6379). Only the services of packages installed just now are touched.
    local package
    for package in "${missing[@]}"; do
        case $package in
            nginx | prometheus | redis-server) disable_service "$package" ;;
        esac
    done
}

disable_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$1" ]; then
        as_root "/etc/init.d/$1" stop >/dev/null 2>&1 || true
        as_root update-rc.d "$1" disable >/dev/null 2>&1 || true
    fi
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

gateway_bin() {
    if [ -n "${HUBGATE_BIN:-}" ]; then
        [ -x "$HUBGATE_BIN" ] || die "HUBGATE_BIN=$HUBGATE_BIN is not an executable file"
        echo "$HUBGATE_BIN"
        return
    fi
    local bin=${CARGO_TARGET_DIR:-$repo/target}/release/gateway
    if [ ! -x "$bin" ]; then
        say "building $bin (cargo build --release -p gateway)" >&2
        (cd "$repo" && cargo build --release -p gateway >&2)
    fi
    echo "$bin"
}

# --- processes --------------------------------------------------------------------------------
# A pid file holds "PID START_TIME EXE": the pid, its start time in clock ticks since boot and
# the resolved executable. A pid counts as ours only while all three still match, so a pid that
# the kernel reused for another process is never signalled.

start_time_of() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

# Starts "$@" in the background with its output in logs/NAME.log and writes run/NAME.pid.
spawn() {
    local name=$1
    shift
    local exe
    exe=$(readlink -f "$(command -v "$1")")
    NO_COLOR=1 "$@" >"$log_dir/$name.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid $(start_time_of "$pid") $exe" >"$run_dir/$name.pid"
}

# Prints the pid of NAME if it is the process `up` started and still runs, else fails.
running_pid() {
    local file=$run_dir/$1.pid pid start exe actual
    [ -f "$file" ] || return 1
    read -r pid start exe <"$file" || return 1
    [ "$(start_time_of "$pid" 2>/dev/null)" = "$start" ] || return 1
    actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    # A binary rebuilt while it runs shows as "PATH (deleted)".
    [ "${actual% (deleted)}" = "$exe" ] || return 1
    echo "$pid"
}

stop_component() {
    local name=$1 pid
    if ! pid=$(running_pid "$name"); then
        [ -f "$run_dir/$name.pid" ] && say "$name: not running (stale pid file removed)"
        rm -f "$run_dir/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Gateways close every connection with a reconnectable Close first (--shutdown-timeout 10s).
    local deadline=$((SECONDS + 15))
    while running_pid "$name" >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if running_pid "$name" >/dev/null; then
        say "$name: still running 15 s after SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while running_pid "$name" >/dev/null; do sleep 0.1; done
    fi
    rm -f "$run_dir/$name.pid"
    say "$name: stopped (pid $pid)"
}

# --- health -----------------------------------------------------------------------------------

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; }
gateway_ready() { [ "$(http_code "http://127.0.0.1:$(node_admin_port "$1")/readyz")" = 200 ]; }
nginx_ok() { local code; code=$(http_code "http://127.0.0.1:$lb_port/healthz"); [ -n "$code" ] && [ "$code" != 000 ]; }
prometheus_ready() { [ "$(http_code "http://127.0.0.1:$prometheus_port/-/ready")" = 200 ]; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until "$@" succeeds or the `up` deadline passes.
wait_until() {
    local what=$1
    shift
    until "$@"; do
        if [ $SECONDS -ge "$up_deadline" ]; then
            up_failed "timed out after ${UP_TIMEOUT:-30} s waiting for $what"
        fi
        local name
        for name in $(components); do
            if [ -f "$run_dir/$name.pid" ] && ! running_pid "$name" >/dev/null; then
                up_failed "$name exited while starting"
            fi
        done
        sleep 0.1
    done
}

up_failed() {
    say "local-cluster: $1; last log lines:" >&2
    local log
    for log in "$log_dir"/*.log; do
        [ -f "$log" ] || continue
        printf '\n--- %s ---\n' "$log" >&2
        tail -n 15 "$log" >&2
    done
    say "" >&2
    do_down >&2
    exit 1
}

# --- commands ---------------------------------------------------------------------------------

render_configs() {
    local all_servers="" node_upstreams="" node_map="" targets="" i port
    for i in $(seq 1 "$gateways"); do
        port=$(node_port "$i")
        all_servers+="        server 127.0.0.1:$port;"$'\n'
        node_map+="    #     gw$i gw$i;"$'\n'
        targets+="      - targets: [\"127.0.0.1:$(node_admin_port "$i")\"]"$'\n'
        targets+="        labels: { node: gw$i }"$'\n'
    done
    # For the optional routing by token: gwN's own upstream, the others as its backups.
    local j backups
    for i in $(seq 1 "$gateways"); do
        backups=""
        for j in $(seq 1 "$gateways"); do
            [ "$j" = "$i" ] || backups+=" server 127.0.0.1:$(node_port "$j") backup;"
        done
        node_upstreams+="    # upstream gw$i { server 127.0.0.1:$(node_port "$i");$backups }"$'\n'
    done
    local conf
    conf=$(<"$repo/deploy/local/nginx.conf.template")
    conf=${conf//@STATE_DIR@/$state}
    conf=${conf//@LB_PORT@/$lb_port}
    conf=${conf//@ALL_SERVERS@/${all_servers%$'\n'}}
    conf=${conf//@NODE_UPSTREAMS@/${node_upstreams%$'\n'}}
    conf=${conf//@NODE_MAP@/${node_map%$'\n'}}
    printf '%s\n' "$conf" >"$state/nginx/nginx.conf"
    conf=$(<"$repo/deploy/local/prometheus.yml.template")
    conf=${conf//@TARGETS@/${targets%$'\n'}}
    printf '%s\n' "$conf" >"$state/prometheus/prometheus.yml"
}

do_up() {
    mkdir -p "$state"
    if [ -f "$state/cluster.env" ]; then
        load_settings
        local name alive=0 total=0
        for name in $(components); do
            total=$((total + 1))
            running_pid "$name" >/dev/null && alive=$((alive + 1))
        done
        if [ "$alive" -eq "$total" ]; then
            say "the local cluster is already up (state in $state)"
            print_urls
            return 0
        elif [ "$alive" -gt 0 ]; then
            die "the local cluster in $state is partly up ($alive of $total processes); run '$0 down' first"
        fi
        rm -f "$state/cluster.env" "$run_dir"/*.pid
    fi
    load_settings
    ensure_packages
    local bin
    bin=$(gateway_bin)
    # Stateless gateways: one secret for all, so nginx needs no affinity (each gateway also
    # advertises the URL the others forward Server-Sent Events and long-polling requests to).
    local cluster_secret=${HUBGATE_CLUSTER_SECRET:-}
    if [ -z "$cluster_secret" ]; then
        cluster_secret=local-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    fi
    [ ${#cluster_secret} -ge 16 ] || die "HUBGATE_CLUSTER_SECRET must have at least 16 characters"

    local port i
    for port in "$lb_port" "$redis_port" "$prometheus_port"; do
        ! port_in_use "$port" || die "port $port is in use"
    done
    for i in $(seq 1 "$gateways"); do
        for port in "$(node_port "$i")" "$(node_admin_port "$i")"; do
            ! port_in_use "$port" || die "port $port is in use"
        done
    done

    rm -rf "$run_dir" "$state/prometheus/data" "$state/redis"
    mkdir -p "$run_dir" "$log_dir" "$state/nginx" "$state/prometheus/data" "$state/redis"
    save_settings
    render_configs
    "$(nginx_bin)" -t -q -p "$state/nginx/" -c "$state/nginx/nginx.conf" -e "$log_dir/nginx.error.log" ||
        die "nginx rejected $state/nginx/nginx.conf"

    up_deadline=$((SECONDS + ${UP_TIMEOUT:-30}))
    spawn redis redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "$state/redis" --daemonize no
    wait_until "redis-server to answer PING on $redis_port" redis_ok

    for i in $(seq 1 "$gateways"); do
        HUBGATE_CLUSTER_SECRET=$cluster_secret spawn "gw$i" "$bin" --listen "127.0.0.1:$(node_port "$i")" \
            --advertise-url "http://127.0.0.1:$(node_port "$i")" \
            --admin-listen "127.0.0.1:$(node_admin_port "$i")" \
            --backplane redis --redis-url "redis://127.0.0.1:$redis_port" --node-id "gw$i"
    done
    for i in $(seq 1 "$gateways"); do
        wait_until "gw$i /readyz to answer 200" gateway_ready "$i"
    done

    spawn nginx "$(nginx_bin)" -p "$state/nginx/" -c "$state/nginx/nginx.conf" -e "$log_dir/nginx.error.log"
    wait_until "nginx to answer on $lb_port" nginx_ok

    spawn prometheus prometheus --config.file="$state/prometheus/prometheus.yml" \
        --storage.tsdb.path="$state/prometheus/data" \
        --web.listen-address="127.0.0.1:$prometheus_port"
    wait_until "prometheus /-/ready on $prometheus_port" prometheus_ready

    say "the local cluster is up ($gateways gateways, state in $state)"
    print_urls
}

print_urls() {
    say "  clients (load balancer): http://127.0.0.1:$lb_port/hubs/<hub>"
    local i
    for i in $(seq 1 "$gateways"); do
        say "  gw$i:  http://127.0.0.1:$(node_port "$i")  admin http://127.0.0.1:$(node_admin_port "$i")/metrics"
    done
    say "  prometheus: http://127.0.0.1:$prometheus_port"
    say "  redis: redis://127.0.0.1:$redis_port"
}

do_status() {
    if [ ! -f "$state/cluster.env" ]; then
        say "the local cluster is not up (no $state/cluster.env)"
        return 3
    fi
    load_settings
    local name pid port health bad=0 i
    for name in $(components); do
        case $name in
            redis) port=$redis_port ;;
            nginx) port=$lb_port ;;
            prometheus) port=$prometheus_port ;;
            gw*) i=${name#gw}; port="$(node_port "$i") admin $(node_admin_port "$i")" ;;
        esac
        if pid=$(running_pid "$name"); then
            case $name in
                redis) redis_ok && health=PONG || health="no PONG" ;;
                nginx) health="/healthz $(http_code "http://127.0.0.1:$lb_port/healthz")" ;;
                prometheus) prometheus_ready && health=ready || health="not ready" ;;
                gw*) health="/readyz $(http_code "http://127.0.0.1:$(node_admin_port "$i")/readyz")" ;;
            esac
        else
            pid=-
            health="not running"
        fi
        case $health in PONG | ready | *' 200') ;; *) bad=1 ;; esac
        printf '%-11s pid %-8s port %-18s %s\n' "$name" "$pid" "$port" "$health"
    done
    return $bad
}

do_down() {
    if [ ! -f "$state/cluster.env" ]; then
        say "the local cluster is not up (no $state/cluster.env)"
        return 0
    fi
    load_settings
    local name
    for name in $(components | tac); do
        stop_component "$name"
    done
    rm -f "$state/cluster.env"
    say "the local cluster is down (logs kept in $log_dir)"
}

case ${1:-} in
    up) do_up ;;
    down) do_down ;;
    status) do_status ;;
    *) die "usage: $0 up|down|status" ;;
esac
