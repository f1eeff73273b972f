#!/usr/bin/env bash
# Runs the lane router benchmark: direct vs lane router vs nginx (1 worker), HTTP/1.1 and h2c.
# Installs nginx from Debian packages if it is missing. Extra arguments go to lane-bench
# (default: --duration 20s: long enough that the scheduler's noise on this 2-core machine averages
# out; see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "run.sh: installing nginx" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
fi
if [ "$#" -eq 0 ]; then
    set -- --duration 20s
fi
exec cargo run --release -p lane-bench -- "$@"
