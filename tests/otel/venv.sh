#!/usr/bin/env bash
# Makes the Python environment of the OpenTelemetry end-to-end test (tests/tests/otel.rs) and
# prints its python interpreter's path as the last line of stdout.
#
# The venv lives in ${XDG_CACHE_HOME:-~/.cache}/lane/otel-venv-<hash of requirements.txt>: a warm
# cache costs one check; a changed requirements.txt makes a new venv beside the old one. It is built
# in a temporary directory and renamed into place only once every package imports, so an
# interrupted install never leaves a half-made venv behind; a lock keeps concurrent callers (tests
# run in parallel) from building it twice.
#
# The interpreter the venv is made from: python3 on PATH, or $LANE_OTEL_PYTHON.
#
# Exit codes: 0 ready; 77 no usable python3 (>= 3.9 with venv) on this machine — the test treats
# that as a failure under CI=true and as a skip otherwise; 1 anything else (pip could not install,
# the cache is not writable, …), which always fails the test.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
python="${LANE_OTEL_PYTHON:-python3}"

say() { printf 'otel venv: %s\n' "$*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
  say "no \`$python\` on PATH: install Python 3.9 or newer (with the venv module), or set LANE_OTEL_PYTHON"
  exit 77
fi
if ! "$python" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
  say "\`$python\` ($("$python" --version 2>&1)) is not Python 3.9+ with the venv and ensurepip modules (Debian: apt-get install python3-venv)"
  exit 77
fi

hash="$( (cat "$req"; "$python" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-${HOME:?neither XDG_CACHE_HOME nor HOME is set}/.cache}/lane"
venv="$cache/otel-venv-$hash"
ready="$venv/.lane-ready"

if [ -f "$ready" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$cache" || { say "cannot create the cache directory $cache"; exit 1; }
exec 9>"$cache/otel-venv.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
# Another caller may have finished it while this one waited for the lock.
if [ -f "$ready" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"
  exit 0
fi

start=$(date +%s)
tmp="$venv.tmp.$$"
rm -rf "$tmp" "$venv"
trap 'rm -rf "$tmp"' EXIT
say "creating $venv (one time; pip installs $(grep -c '==' "$req") pinned packages)"
"$python" -m venv "$tmp" || { say "\`$python -m venv\` failed"; exit 1; }
if ! "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2; then
  say "pip could not install $req (is PyPI reachable? see pip's message above)"
  exit 1
fi
if ! "$tmp/bin/python" - >&2 <<'EOF'
import flask, grpc, requests
import opentelemetry.sdk.trace
import opentelemetry.baggage.propagation
import opentelemetry.trace.propagation.tracecontext
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, GrpcInstrumentorServer
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
EOF
then
  say "the installed packages do not import (see above)"
  exit 1
fi
# Renamed into place: only bin/python is used (pip's and activate's scripts keep the temporary
# path), and python finds its site-packages relative to itself, wherever the venv is.
mv "$tmp" "$venv"
touch "$ready"
say "ready in $(( $(date +%s) - start ))s"
echo "$venv/bin/python"
