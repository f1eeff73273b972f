#!/usr/bin/env bash
# Installs what the end-to-end test needs, once: Debian's chromium and code-server's build
# dependencies (apt), and code-server@4.100.3 (npm) in a cache directory outside the repo.
# Prints nothing but progress; sourced by e2e.sh, which reads CODE_SERVER from it.
set -euo pipefail

CODE_SERVER_VERSION=4.100.3   # the last code-server release that runs on Node 20
E2E_CACHE="${LANE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lane-vscode-e2e}"
CS_DIR="$E2E_CACHE/code-server-$CODE_SERVER_VERSION"
CODE_SERVER="$CS_DIR/node_modules/.bin/code-server"
# Written only when the install (with its postinstall) finished.
CS_DONE="$CS_DIR/.installed"

apt_needed=()
[[ -x /usr/bin/chromium ]] || apt_needed+=(chromium)
command -v rg >/dev/null || apt_needed+=(ripgrep)
if [[ ! -f "$CS_DONE" ]]; then
    for p in libkrb5-dev libxkbfile-dev libsecret-1-dev; do
        dpkg -s "$p" >/dev/null 2>&1 || apt_needed+=("$p")
    done
    command -v make >/dev/null || apt_needed+=(make)
    command -v g++ >/dev/null || apt_needed+=(g++)
    command -v python3 >/dev/null || apt_needed+=(python3)
fi
if ((${#apt_needed[@]})); then
    echo "e2e: apt-get install ${apt_needed[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi

if [[ ! -f "$CS_DONE" ]]; then
    echo "e2e: installing code-server@$CODE_SERVER_VERSION into $E2E_CACHE"
    dir="$CS_DIR"
    rm -rf "$dir"
    mkdir -p "$dir"
    # @vscode/ripgrep downloads its binary unless it finds one in its cache: give it Debian's rg.
    tmp="${TMPDIR:-/tmp}"
    rgcache="$tmp/vscode-ripgrep-cache-1.15.11"
    mkdir -p "$rgcache"
    rgtar="$rgcache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
    if [[ ! -f "$rgtar" ]]; then
        stage=$(mktemp -d)
        cp "$(command -v rg)" "$stage/rg"
        tar -czf "$rgtar" -C "$stage" rg
        rm -rf "$stage"
    fi
    (
        cd "$dir"
        [[ -f package.json ]] || echo '{"name":"lane-e2e-code-server","private":true}' > package.json
        # code-server's postinstall builds native modules (and runs nested npm installs that
        # inherit these settings): npm 11 runs no install scripts unless allowed.
        npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=/usr \
        npm_config_dangerously_allow_all_scripts=true \
        npm_config_fund=false npm_config_audit=false \
            npm install --no-progress --no-save "code-server@$CODE_SERVER_VERSION" >"$dir/install.log" 2>&1 \
            || { tail -50 "$dir/install.log" >&2; exit 1; }
    )
    "$CODE_SERVER" --version >/dev/null 2>&1 || { echo "e2e: code-server did not install (see $dir/install.log)" >&2; exit 1; }
    touch "$CS_DONE"
fi
export CODE_SERVER E2E_CACHE
