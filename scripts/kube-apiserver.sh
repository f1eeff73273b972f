#!/usr/bin/env bash
# Builds, starts and stops the real kube-apiserver (+ embedded etcd) that lane's
# tests run against. The server is the Go program in tests/kube-apiserver/
# (k8s.io/kubernetes as a library; versions pinned in its go.mod).
#
#   scripts/kube-apiserver.sh build         build target/kube-apiserver/kube-apiserver
#                                           (skipped when newer than go.mod, go.sum, *.go)
#   scripts/kube-apiserver.sh start OUTDIR  build if needed, start in the background,
#                                           wait for READY, print OUTDIR/kubeconfig
#   scripts/kube-apiserver.sh stop [OUTDIR] stop the server started for OUTDIR
#                                           (default: the last one started)
#
# Environment:
#   KUBE_APISERVER_START_TIMEOUT  seconds to wait for READY (default 180)
#   KUBE_APISERVER_PARENT_PID     the server stops by itself when this process exits
#   KUBE_APISERVER_FLAGS          extra kube-apiserver flags (word-split), e.g. "--v=2"
#   CI                            when "true", a missing Go toolchain is an error (exit 1)
#                                 like every other failure; otherwise it exits 77 ("skip")
#
# Files in OUTDIR once started: kubeconfig (contexts admin, alice, bob),
# {admin,alice,bob}.kubeconfig, ca.crt, env (KUBE_SERVER, KUBE_CA_FILE,
# KUBE_TOKEN_*), kube-apiserver.log (its stderr), kube-apiserver.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/tests/kube-apiserver"
BIN_DIR="$ROOT/target/kube-apiserver"
BIN="$BIN_DIR/kube-apiserver"
LAST="$BIN_DIR/last-outdir"

die() {
  echo "kube-apiserver.sh: error: $*" >&2
  exit 1
}

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
      die "the Go toolchain (go) is not on PATH; it is needed to build tests/kube-apiserver"
    fi
    echo "kube-apiserver.sh: skipped: the Go toolchain (go) is not on PATH" >&2
    exit 77
  fi
}

is_fresh() {
  [ -x "$BIN" ] || return 1
  local f
  for f in "$SRC"/go.mod "$SRC"/go.sum "$SRC"/*.go "$0"; do
    [ "$f" -nt "$BIN" ] && return 1
  done
  return 0
}

build() {
  if is_fresh; then
    return 0
  fi
  need_go
  mkdir -p "$BIN_DIR"
  # Tests may start several servers at once: one build at a time, the others then find it fresh.
  exec 9>"$BIN_DIR/build.lock"
  flock 9
  if is_fresh; then
    flock -u 9
    return 0
  fi
  local kver
  kver="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$SRC/go.mod")"
  [ -n "$kver" ] || die "cannot find the k8s.io/kubernetes version in $SRC/go.mod"
  local major="${kver#v}"; major="${major%%.*}"
  local minor="${kver#v*.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  # -s -w: no symbol table/DWARF (153 MB -> 107 MB; panics still have stack traces).
  # The -X flags: without them the server reports v0.0.0-master+$Format:%H$ on /version.
  local ldflags="-s -w -X $pkg.gitVersion=$kver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  echo "kube-apiserver.sh: building $BIN (k8s.io/kubernetes $kver; the first build takes minutes)" >&2
  # Download first, so that a registry problem is reported as such.
  if ! (cd "$SRC" && go mod download); then
    die "go mod download failed in $SRC (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  fi
  if ! (cd "$SRC" && nice -n 10 go build -buildvcs=false -ldflags "$ldflags" -o "$BIN.tmp" .); then
    rm -f "$BIN.tmp"
    die "go build failed in $SRC"
  fi
  mv -f "$BIN.tmp" "$BIN"
  flock -u 9
}

alive() { kill -0 "$1" 2>/dev/null; }

# The pid still belongs to our binary (not a reused pid)?
ours() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [ "${exe% (deleted)}" = "$BIN" ]
}

start() {
  local out="${1:-}"
  [ -n "$out" ] || die "usage: $0 start OUTDIR"
  build
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  local pidfile="$out/kube-apiserver.pid"
  if [ -f "$pidfile" ] && alive "$(cat "$pidfile")" && ours "$(cat "$pidfile")"; then
    die "a kube-apiserver (pid $(cat "$pidfile")) is already running for $out; run: $0 stop $out"
  fi
  rm -f "$out/env" "$out/stdout" "$pidfile"

  local args=(--out "$out")
  if [ -n "${KUBE_APISERVER_PARENT_PID:-}" ]; then
    args+=(--parent-pid "$KUBE_APISERVER_PARENT_PID")
  fi
  # shellcheck disable=SC2206 # word splitting of the extra flags is intended
  local extra=(${KUBE_APISERVER_FLAGS:-})
  nohup "$BIN" "${args[@]}" -- "${extra[@]}" >"$out/stdout" 2>"$out/kube-apiserver.log" </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  echo "$out" >"$LAST"

  local timeout="${KUBE_APISERVER_START_TIMEOUT:-180}"
  local deadline=$((SECONDS + timeout))
  while ! grep -q '^READY ' "$out/stdout" 2>/dev/null; do
    if ! alive "$pid"; then
      wait "$pid" 2>/dev/null || true
      echo "---- last lines of $out/kube-apiserver.log ----" >&2
      tail -n 30 "$out/kube-apiserver.log" >&2 || true
      die "kube-apiserver exited before it was ready (log: $out/kube-apiserver.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      echo "---- last lines of $out/kube-apiserver.log ----" >&2
      tail -n 30 "$out/kube-apiserver.log" >&2 || true
      die "kube-apiserver was not ready after ${timeout}s (log: $out/kube-apiserver.log)"
    fi
    sleep 0.1
  done
  echo "$out/kubeconfig"
}

stop() {
  local out="${1:-}"
  if [ -z "$out" ]; then
    [ -f "$LAST" ] || { echo "kube-apiserver.sh: nothing to stop" >&2; return 0; }
    out="$(cat "$LAST")"
  fi
  local pidfile="$out/kube-apiserver.pid"
  [ -f "$pidfile" ] || { echo "kube-apiserver.sh: nothing to stop in $out" >&2; return 0; }
  local pid
  pid="$(cat "$pidfile")"
  if alive "$pid" && ours "$pid"; then
    kill -TERM "$pid"
    local i
    for i in $(seq 1 400); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      die "kube-apiserver (pid $pid) did not stop within 40s after SIGTERM; killed it"
    fi
  fi
  rm -f "$pidfile"
  if [ -f "$LAST" ] && [ "$(cat "$LAST")" = "$out" ]; then
    rm -f "$LAST"
  fi
}

# Prints the path of a kubectl: the one on PATH, else one built from the same pinned
# k8s.io/kubernetes (tests/kube-apiserver/cmd/kubectl) into target/kube-apiserver/kubectl.
kubectl_path() {
  if command -v kubectl >/dev/null 2>&1; then
    command -v kubectl
    return 0
  fi
  local bin="$BIN_DIR/kubectl"
  if [ ! -x "$bin" ] || [ "$SRC/go.mod" -nt "$bin" ] || [ "$SRC/cmd/kubectl/main.go" -nt "$bin" ]; then
    need_go
    mkdir -p "$BIN_DIR"
    exec 8>"$BIN_DIR/kubectl.lock"
    flock 8
    if [ ! -x "$bin" ] || [ "$SRC/go.mod" -nt "$bin" ] || [ "$SRC/cmd/kubectl/main.go" -nt "$bin" ]; then
      echo "kube-apiserver.sh: no kubectl on PATH; building one into $bin" >&2
      (cd "$SRC" && nice -n 10 go build -buildvcs=false -ldflags "-s -w" -o "$bin.tmp" ./cmd/kubectl) \
        || { rm -f "$bin.tmp"; die "go build of kubectl failed in $SRC"; }
      mv -f "$bin.tmp" "$bin"
    fi
    flock -u 8
  fi
  echo "$bin"
}

case "${1:-}" in
  build) build ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  kubectl) kubectl_path ;;
  *) echo "usage: $0 build | start OUTDIR | stop [OUTDIR] | kubectl" >&2; exit 2 ;;
esac
