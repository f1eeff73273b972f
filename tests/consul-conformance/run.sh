#!/usr/bin/env bash
# Checks lane's Consul test double (tests/src/consul.rs) against HashiCorp's Go client
# (github.com/hashicorp/consul/api): builds both and runs tests/consul-conformance/main.go against
# the double. Exit 77: no Go toolchain, skipped; under CI=true a missing Go is an error (exit 1).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

if ! command -v go >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "consul-conformance: error: no Go toolchain (go) on PATH; CI needs one" >&2
    exit 1
  fi
  echo "consul-conformance: no Go toolchain; skipped" >&2
  exit 77
fi

cargo build -p lane-tests --bin lane-test-consul --locked --quiet
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET/consul-conformance"
# Modules and build outputs live in Go's default caches (GOMODCACHE, GOCACHE).
(cd tests/consul-conformance && go build -o "$TARGET/consul-conformance/consul-conformance" .)
"$TARGET/consul-conformance/consul-conformance" -double "$TARGET/debug/lane-test-consul"
