#!/usr/bin/env bash
# The lane router measured from outside, as a user would: `wrk` (Debian's package) against the real
# `lane` agent's router and against nginx (1 worker, `map $http_x_lane` header route) over the same
# two backends (the `lane sample-service` baseline and feature-x versions of demo.b, deployed by the
# agent), in one invocation, interleaved rounds, at 1 and 32 connections. Prints req/s and p99 per
# run, then medians and router/nginx ratios. Installs wrk and nginx if missing (apt-get, as root).
#
#   server/bench/wrk-vs-nginx.sh                 # 3 rounds × 5 s per (target, connections)
#   ROUNDS=5 DURATION=10s CONNS="1 32" server/bench/wrk-vs-nginx.sh
#   VARIANTS="shared:LANE_ROUTER_WORKERS=0 w2:LANE_ROUTER_WORKERS=2" server/bench/wrk-vs-nginx.sh
#
# VARIANTS adds targets: more `lane` agents (each with its own state dir, router and demo.b
# versions: the same binary and backends), started with the given environment, to compare router
# settings against each other in the same invocation. nginx routes to the first agent's backends.
#
# PROFILE=1 adds, per target, one more 32-connection run under `strace -c -f` (system calls per
# request) and one under `perf stat` (context switches and CPU migrations per request, where perf
# is allowed); those runs' req/s are not figures (tracing slows them).
#
# Extra environment for the agent (for example LANE_ROUTER_* limits) is passed through. Not part of
# scripts/test.sh (slow and noisy); figures with their command are in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-"1 32"}
NGINX_PORT=${NGINX_PORT:-47880}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "wrk-vs-nginx: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || { echo "wrk-vs-nginx: python3 is needed to read the results" >&2; exit 1; }

cargo build --release --locked -q -p lane
LANE=$PWD/target/release/lane

work=$(mktemp -d /tmp/lane-wrk.XXXXXX)
export LANE_ROUTER_ADDR=127.0.0.1:0
nginx_pid=
cleanup() {
    set +e
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    for home in "$work"/home-*; do LANE_HOME=$home "$LANE" down >/dev/null 2>&1; done
    rm -rf "$work"
}
trap cleanup EXIT

# demo.b, deployed by the agent: baseline from main, feature-x from a branch (both the sample
# service, which answers `/` itself when it has no next hop).
repo=$work/repos/b
mkdir -p "$repo"
cat >"$repo/lane.toml" <<EOF
app = "demo"
proc = "b"

[run]
command = "'$LANE' sample-service --app demo --name b --port {port}"

[health]
http = "/healthz"
timeout = "20s"
EOF
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=bench -c user.email=bench@localhost add lane.toml
git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -q -m bench
printf '[[service]]\npath = "b"\n' >"$work/repos/lane-workspace.toml"
git -C "$repo" branch feature-x-branch

# start_agent NAME PORTS [VAR=VALUE…]: an agent with its own state dir, demo.b in baseline and in
# lane feature-x; prints its router address and the two versions' addresses.
start_agent() {
    local home=$work/home-$1 ports=$2
    shift 2
    git -C "$repo" checkout -q main
    env LANE_HOME="$home" LANE_PORT_RANGE="$ports" "$@" \
        "$LANE" baseline up --file "$work/repos/lane-workspace.toml" >/dev/null
    git -C "$repo" checkout -q feature-x-branch
    (cd "$repo" && env LANE_HOME="$home" LANE_PORT_RANGE="$ports" "$@" \
        "$LANE" deploy --lane feature-x >/dev/null)
    LANE_HOME=$home "$LANE" status --json | python3 -c '
import json, sys
st = json.load(sys.stdin)["status"]
def addr(insts):
    return next(i["placement"]["addr"] for i in insts if i["service"] == "demo.b")
lane = next(l for l in st["lanes"] if l["id"] == "feature-x")
print(st["router"], addr(st["baseline"]), addr(lane["instances"]))
'
}
read -r ROUTER BASE LANEB < <(start_agent router 47900-47909)
echo "router $ROUTER; demo.b baseline $BASE, feature-x $LANEB; nginx 127.0.0.1:$NGINX_PORT"

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 1000000;
    upstream baseline_b { server $BASE; keepalive 64; keepalive_requests 1000000; }
    upstream feature_x_b { server $LANEB; keepalive 64; keepalive_requests 1000000; }
    map \$http_x_lane \$lane_upstream {
        default baseline_b;
        feature-x feature_x_b;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://\$lane_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            add_header x-lane-served-by "demo.b@\$lane_upstream";
        }
    }
}
EOF
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$NGINX_PORT") 2>/dev/null && break
    sleep 0.1
done

# Targets: name → address. The agent's router, the variants, nginx.
names=(router)
addrs=("$ROUTER")
first=47910
for variant in ${VARIANTS:-}; do
    name=${variant%%:*}
    vars=${variant#*:}
    [ "$vars" = "$variant" ] && vars=
    IFS=, read -r -a assignments <<<"$vars"
    read -r addr _ _ < <(start_agent "$name" "$first-$((first + 9))" "${assignments[@]}")
    echo "$name: router $addr (${vars:-default settings})"
    names+=("$name")
    addrs+=("$addr")
    first=$((first + 10))
done
names+=(nginx)
addrs+=("127.0.0.1:$NGINX_PORT")

# Every target must route the lane: a short run each, checked.
check() {
    local out
    for _ in $(seq 50); do
        out=$(wrk -t1 -c1 -d200ms -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://$1/" 2>&1) || true
        if ! grep -q "Non-2xx\|Socket errors\|unable to connect" <<<"$out"; then
            # …and routes the lane to the lane's version.
            local head
            head=$(exec 3<>"/dev/tcp/${1%:*}/${1##*:}"
                printf 'GET / HTTP/1.1\r\nHost: b.demo.localhost\r\nx-lane: feature-x\r\nConnection: close\r\n\r\n' >&3
                cat <&3)
            grep -qi "^x-lane-served-by: demo.b@feature" <<<"$head" && return 0
            out=$head
        fi
        sleep 0.2
    done
    echo "wrk-vs-nginx: $2 at $1 does not serve demo.b: $out" >&2
    exit 1
}
for i in "${!names[@]}"; do
    check "${addrs[$i]}" "${names[$i]}"
done

pids_of() {
    case $1 in
        nginx) pgrep -P "$nginx_pid" | paste -sd, ;;
        *) python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/home-$1/agent.json" ;;
    esac
}
# The proxy's own CPU time (user + system, all its threads) in clock ticks, from /proc: the proxy's
# cost per request, which the machine's load moves much less than req/s or p99.
cpu_ticks() {
    local total=0 p
    for p in ${1//,/ }; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)
pids=()
for i in "${!names[@]}"; do
    pids+=("$(pids_of "${names[$i]}")")
done

results=$work/results.tsv
: >"$results"
for round in $(seq "$ROUNDS"); do
    for c in $CONNS; do
        for i in "${!names[@]}"; do
            target=${names[$i]}
            addr=${addrs[$i]}
            before=$(cpu_ticks "${pids[$i]}")
            out=$(wrk -t1 -c"$c" -d"$DURATION" --latency \
                -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://$addr/")
            ticks=$(( $(cpu_ticks "${pids[$i]}") - before ))
            if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
                echo "wrk-vs-nginx: errors against $target: $out" >&2
                exit 1
            fi
            printf '%s\n' "$out" >"$work/wrk-$target-$c-$round.txt"
            python3 - "$round" "$c" "$target" "$work/wrk-$target-$c-$round.txt" "$ticks" "$HZ" >>"$results" <<'PY'
import re, sys
text = open(sys.argv[4]).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = int(sys.argv[5]) / int(sys.argv[6]) * 1e6 / max(requests, 1)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
v, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text).groups()
p99 = float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
print(f"{sys.argv[1]}\t{sys.argv[2]}\t{sys.argv[3]}\t{rps:.0f}\t{p99:.0f}\t{cpu_us:.2f}")
PY
            tail -1 "$results" | awk -F'\t' '{printf "round %s  c=%-3s %-8s %8s req/s  p99 %6s µs  proxy CPU %5s µs/request\n", $1, $2, $3, $4, $5, $6}'
        done
    done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
conns = sorted({int(r[1]) for r in rows})
print()
targets = list(dict.fromkeys(r[2] for r in rows))
print("| conns | target | req/s (median) | p99 µs (median) | proxy CPU µs/request (median) | req/s vs nginx | p99 vs nginx | CPU/request vs nginx |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in conns:
    med = {}
    for t in targets:
        sel = [r for r in rows if int(r[1]) == c and r[2] == t]
        med[t] = tuple(statistics.median(float(r[k]) for r in sel) for k in (3, 4, 5))
    for t in targets:
        rps, p99, cpu = med[t]
        n = med["nginx"]
        print(f"| {c} | {t} | {rps:.0f} | {p99:.0f} | {cpu:.2f} | {rps / n[0]:.2f} | {p99 / n[1]:.2f} | {cpu / max(n[2], 1e-9):.2f} |")
PY

[ "${PROFILE:-0}" = 1 ] || exit 0
echo
echo "| target | requests | syscalls/request | top system calls | context switches/request | migrations/request |"
echo "| --- | ---: | ---: | --- | ---: | ---: |"
for i in "${!names[@]}"; do
    target=${names[$i]}
    pid=$(pids_of "$target" "$i")
    pflag=()
    for p in ${pid//,/ }; do pflag+=(-p "$p"); done
    strace -c -f -q "${pflag[@]}" -o "$work/strace-$target.txt" &
    tracer=$!
    sleep 0.5
    out=$(wrk -t1 -c32 -d3s -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://${addrs[$i]}/")
    kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
    sreq=$(grep -oE '^ *[0-9]+ requests in' <<<"$out" | grep -oE '[0-9]+')
    cs=-; mig=-
    if perf stat -e context-switches,cpu-migrations "${pflag[@]}" -x, -o "$work/perf-$target.txt" -- \
        wrk -t1 -c32 -d3s -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://${addrs[$i]}/" \
        >"$work/perf-wrk-$target.txt" 2>/dev/null; then
        preq=$(grep -oE '^ *[0-9]+ requests in' "$work/perf-wrk-$target.txt" | grep -oE '[0-9]+')
        cs=$(awk -F, -v n="$preq" '/context-switches/ {printf "%.2f", $1 / n}' "$work/perf-$target.txt")
        mig=$(awk -F, -v n="$preq" '/cpu-migrations/ {printf "%.3f", $1 / n}' "$work/perf-$target.txt")
    fi
    python3 - "$work/strace-$target.txt" "$sreq" "$target" "$cs" "$mig" <<'PY'
import re, sys
rows = []
total = 0
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[-1] == "total":
        total = int(f[3])
    elif len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "syscall":
        rows.append((int(f[3]), f[-1]))
n = int(sys.argv[2])
rows.sort(reverse=True)
top = ", ".join(f"{name} {calls / n:.2f}" for calls, name in rows[:5])
print(f"| {sys.argv[3]} | {n} | {total / n:.2f} | {top} | {sys.argv[4]} | {sys.argv[5]} |")
PY
done

# HOTSPOTS=1 (with PROFILE=1): where each proxy spends its CPU, from `perf record` of one more
# 3 s, 32-connection run (the top symbols by self time; release build, no frame pointers, so
# self time only).
[ "${HOTSPOTS:-0}" = 1 ] || exit 0
for i in "${!names[@]}"; do
    target=${names[$i]}
    pid=$(pids_of "$target" "$i")
    pflag=()
    for p in ${pid//,/ }; do pflag+=(-p "$p"); done
    if perf record -q -F 999 "${pflag[@]}" -o "$work/perf-record-$target.data" -- \
        wrk -t1 -c32 -d3s -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://${addrs[$i]}/" \
        >/dev/null 2>&1; then
        echo
        echo "$target: top symbols by self CPU time"
        perf report -q -i "$work/perf-record-$target.data" --no-children --sort symbol 2>/dev/null \
            >"$work/perf-report-$target.txt" || true
        awk '/\[\.\]/ {user += $1} /\[k\]/ {kernel += $1}
            END {printf "  user space %.1f %%, kernel %.1f %% of samples\n", user, kernel}' \
            "$work/perf-report-$target.txt"
        awk 'NF && n < 25 {print; n++}' "$work/perf-report-$target.txt"
        echo "  top user-space symbols:"
        awk '/\[\.\]/ && n < 15 {print; n++}' "$work/perf-report-$target.txt"
    else
        echo "$target: perf record is not allowed here" >&2
    fi
done
