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
npx vsce package --no-dependencies --allow-missing-repository --skip-license --no-rewrite-relative-links -o dist/lane.vsix
# Read the archive's listing in one process: `unzip -l | grep -q` under pipefail fails at random
# (grep exits at the first match, unzip dies of SIGPIPE writing the rest).
python3 - dist/lane.vsix <<'PY' || { echo "error: the vsix has no extension/dist/main.js" >&2; exit 1; }
import sys, zipfile
sys.exit(0 if "extension/dist/main.js" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)
PY

echo
echo "vscode-extension: all checks passed in $((SECONDS - t0))s"
