#!/usr/bin/env bash
# Everything the VS Code extension is checked with, from a clean clone with only the npm registry:
# npm ci, type check, lint, unit tests, tests against the real `lane lsp` (LANE_BIN, default
# ../target/debug/lane), the bundle and `vsce package` (dist/lane.vsix).
set -euo pipefail
cd "$(dirname "$0")/.."

export LANE_BIN="${LANE_BIN:-$(cd .. && pwd)/target/debug/lane}"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

step "npm ci"
if [[ -f package-lock.json ]]; then npm ci --no-progress; else npm install --no-progress; fi

step "type check (tsc --noEmit)"
npx tsc --noEmit -p .

step "lint (eslint)"
npx eslint --max-warnings 0 .

step "compile tests"
rm -rf out
node scripts/build.mjs --tests

step "unit tests"
node --test out/test/unit/

step "server tests against $LANE_BIN (wire + drift)"
if [[ ! -x "$LANE_BIN" ]]; then
    echo "error: $LANE_BIN is not an executable; build it (cargo build -p lane) or set LANE_BIN" >&2
    exit 1
fi
node --test --test-concurrency=1 out/test/server/

step "bundle"
node scripts/build.mjs --minify

step "vsce package"
npx vsce package --no-dependencies --allow-missing-repository --skip-license -o dist/lane.vsix
unzip -l dist/lane.vsix | grep -q 'extension/dist/main.js' || { echo "error: the vsix has no main.js" >&2; exit 1; }

echo
echo "vscode-extension: all checks passed in $((SECONDS - t0))s"
