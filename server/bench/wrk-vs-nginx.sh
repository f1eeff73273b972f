#!/usr/bin/env bash
# The lane router measured from outside, as a user would: `wrk` (Debian's package) against the real
# `lane` agent's router and against nginx (1 worker, `map $http_x_lane` header route) over the same
# two backends (the `lane sample-service` baseline and feature-x versions of demo.b, deployed by the
# agent), in one invocation, interleaved rounds, at 1 and 32 connections. Prints req/s and p99 per
# run, then medians and router/nginx ratios. Installs wrk and nginx if missing (apt-get, as root).
#
#   server/bench/wrk-vs-nginx.sh                 # 3 rounds × 5 s per (target, connections)
#   ROUNDS=5 DURATION=10s CONNS="1 32" server/bench/wrk-vs-nginx.sh
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
export LANE_HOME=$work/home LANE_ROUTER_ADDR=127.0.0.1:0 LANE_PORT_RANGE=47900-47999
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    "$LANE" down >/dev/null 2>&1 || true
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
"$LANE" baseline up --file "$work/repos/lane-workspace.toml" >/dev/null
git -C "$repo" checkout -q -b feature-x-branch
(cd "$repo" && "$LANE" deploy --lane feature-x >/dev/null)

read -r ROUTER BASE LANEB < <("$LANE" status --json | python3 -c '
import json, sys
st = json.load(sys.stdin)
def addr(insts):
    return next(i["address"] for i in insts if i["service"] == "demo.b")
lane = next(l for l in st["lanes"] if l["id"] == "feature-x")
print(st["router"], addr(st["baseline"]), addr(lane["instances"]))
')
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

# Both must route the lane: one request each, checked.
check() {
    local out
    out=$(wrk -t1 -c1 -d200ms -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://$1/" 2>&1)
    if grep -q "Non-2xx" <<<"$out"; then
        echo "wrk-vs-nginx: $2 answers errors: $out" >&2
        exit 1
    fi
}
check "$ROUTER" router
check "127.0.0.1:$NGINX_PORT" nginx

results=$work/results.tsv
: >"$results"
for round in $(seq "$ROUNDS"); do
    for c in $CONNS; do
        for target in router nginx; do
            addr=$ROUTER
            [ "$target" = nginx ] && addr=127.0.0.1:$NGINX_PORT
            out=$(wrk -t1 -c"$c" -d"$DURATION" --latency \
                -H "Host: b.demo.localhost" -H "x-lane: feature-x" "http://$addr/")
            if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
                echo "wrk-vs-nginx: errors against $target: $out" >&2
                exit 1
            fi
            printf '%s\n' "$out" >"$work/wrk-$target-$c-$round.txt"
            python3 - "$round" "$c" "$target" "$work/wrk-$target-$c-$round.txt" >>"$results" <<'PY'
import re, sys
text = open(sys.argv[4]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
v, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text).groups()
p99 = float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
print(f"{sys.argv[1]}\t{sys.argv[2]}\t{sys.argv[3]}\t{rps:.0f}\t{p99:.0f}")
PY
            tail -1 "$results" | awk -F'\t' '{printf "round %s  c=%-3s %-7s %8s req/s  p99 %6s µs\n", $1, $2, $3, $4, $5}'
        done
    done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
conns = sorted({int(r[1]) for r in rows})
print()
print("| conns | target | req/s (median) | p99 µs (median) | req/s router/nginx | p99 router/nginx |")
print("| ---: | --- | ---: | ---: | ---: | ---: |")
for c in conns:
    med = {}
    for t in ("router", "nginx"):
        sel = [r for r in rows if int(r[1]) == c and r[2] == t]
        med[t] = (statistics.median(float(r[3]) for r in sel), statistics.median(float(r[4]) for r in sel))
    for t in ("router", "nginx"):
        rps, p99 = med[t]
        ratio = ("%.2f" % (med["router"][0] / med["nginx"][0]), "%.2f" % (med["router"][1] / med["nginx"][1])) if t == "router" else ("", "")
        print(f"| {c} | {t} | {rps:.0f} | {p99:.0f} | {ratio[0]} | {ratio[1]} |")
PY
