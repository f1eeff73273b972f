#!/usr/bin/env bash
# End-to-end: the packaged extension in a real VS Code (code-server 4.100.3) driven by
# playwright-core in Debian's headless Chromium, against the real `lane lsp` (LANE_BIN, default
# ../target/debug/lane). Installs code-server into a cache dir outside the repo and chromium via apt
# when missing (scripts/e2e-setup.sh). The editor starts with no `lane` to be found (not on PATH,
# a HOME without ~/.cargo/bin/lane, no setting); the test sets `lane.server.path` in the settings
# editor. Screenshots: e2e/progress.png, e2e/context-menu.png, e2e/screenshot.png, and the README's
# server-not-found.png and first-run.png: into e2e/ too (untracked), or into media/ (committed, in
# the vsix) with E2E_UPDATE_MEDIA=1, so a test run leaves the checkout as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
ext_dir=$(pwd)

export LANE_BIN="${LANE_BIN:-$(cd .. && pwd)/target/debug/lane}"
[[ -x "$LANE_BIN" ]] || { echo "e2e: $LANE_BIN is not an executable; build it or set LANE_BIN" >&2; exit 1; }
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
t0=$SECONDS

media_dir="$ext_dir/e2e"
[[ "${E2E_UPDATE_MEDIA:-}" == 1 ]] && media_dir="$ext_dir/media"

# shellcheck source=e2e-setup.sh
source scripts/e2e-setup.sh

[[ -d node_modules ]] || npm ci --no-progress
node scripts/build.mjs --minify
npx vsce package --no-dependencies --allow-missing-repository --skip-license --no-rewrite-relative-links -o dist/lane.vsix >/dev/null
npx esbuild e2e/run.ts --bundle --packages=external --platform=node --target=node20 --format=cjs --outfile=out/e2e/run.js --log-level=warning

work=$(mktemp -d "${TMPDIR:-/tmp}/lane-vscode-e2e.XXXXXX")
pgid=""
export LANE_HOME="$work/lane-home" LANE_ROUTER_ADDR=127.0.0.1:0 LANE_PORT_RANGE=46000-46199
export XDG_CONFIG_HOME="$work/config" GIT_CONFIG_NOSYSTEM=1 NO_COLOR=1
export GIT_AUTHOR_NAME=Alice GIT_AUTHOR_EMAIL=alice@example.com
export GIT_COMMITTER_NAME=Alice GIT_COMMITTER_EMAIL=alice@example.com

cleanup() {
    local rc=$?
    if [[ -n "$pgid" ]]; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    "$LANE_BIN" down >/dev/null 2>&1 || true
    if [[ $rc -eq 0 ]]; then
        rm -rf "$work"
    else
        echo "e2e: failed; code-server log and state kept in $work" >&2
        tail -30 "$work/code-server.log" >&2 2>/dev/null || true
    fi
}
trap cleanup EXIT

# The service repository the editor opens: the sample service `demo.b`, on branch feature/login.
repo="$work/repo/b"
mkdir -p "$repo"
cat > "$repo/lane.toml" <<TOML
app = "demo"
proc = "b"

[build]
command = "sleep 3"

[run]
command = "'$LANE_BIN' sample-service --app demo --name b --port {port}"

[health]
http = "/healthz"
timeout = "20s"
TOML
git -C "$repo" init -q -b main
git -C "$repo" add lane.toml
git -C "$repo" commit -q -m initial
git -C "$repo" checkout -q -b feature/login
mkdir -p "$work/home"
# PATH without any directory that holds a `lane`: the extension must not find one on its own.
e2e_path=""
IFS=: read -ra path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
    [[ -n "$d" && ! -x "$d/lane" ]] && e2e_path="${e2e_path:+$e2e_path:}$d"
done

# code-server with its own user data, extensions and config.
mkdir -p "$work/user-data/User" "$work/extensions"
cat > "$work/user-data/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none"
}
JSON
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat > "$work/config.yaml" <<YAML
bind-addr: 127.0.0.1:$port
auth: none
cert: false
YAML
cs_args=(--config "$work/config.yaml" --user-data-dir "$work/user-data" --extensions-dir "$work/extensions")
"$CODE_SERVER" "${cs_args[@]}" --install-extension "$ext_dir/dist/lane.vsix" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; exit 1; }

# In its own session, so the whole process tree (extension host, `lane lsp`) is one group to
# kill. The session leader writes its pid (= the group id) before exec'ing code-server; reading
# `ps -o pgid` of $! instead races with setsid and could name this script's own group.
env -u LANE_SERVER_PATH -u CARGO_HOME HOME="$work/home" PATH="$e2e_path" setsid bash -c 'echo $$ > "$0"; exec "$@"' "$work/code-server.pgid" \
    "$CODE_SERVER" "${cs_args[@]}" \
    --bind-addr "127.0.0.1:$port" --auth none --disable-telemetry --disable-update-check \
    --disable-workspace-trust "$repo" >"$work/code-server.log" 2>&1 &
for _ in $(seq 1 50); do [[ -s "$work/code-server.pgid" ]] && break; sleep 0.1; done
pgid=$(cat "$work/code-server.pgid")
if [[ -z "$pgid" || "$pgid" == "$(ps -o pgid= -p $$ | tr -d ' ')" ]]; then
    echo "e2e: could not start code-server in its own process group" >&2
    pgid=""
    exit 1
fi
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "e2e: code-server did not come up" >&2; exit 1; }
echo "e2e: code-server on 127.0.0.1:$port (pgid $pgid)"

mkdir -p "$ext_dir/media"
E2E_URL="http://127.0.0.1:$port/?folder=$repo" E2E_OUT="$ext_dir/e2e" E2E_MEDIA="$media_dir" E2E_LANE_BIN="$LANE_BIN" \
    node out/e2e/run.js
echo "e2e: passed in $((SECONDS - t0))s"
