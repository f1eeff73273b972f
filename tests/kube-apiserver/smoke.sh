#!/usr/bin/env bash
# Smoke test of the real kube-apiserver in this directory, over plain HTTPS
# (curl + jq), the way a non-Go client sees it:
#   - a CustomResourceDefinition (lane.dev/v1alpha1 Lane) becomes Established
#     (the apiextensions controllers run inside kube-apiserver)
#   - a namespace and a Lane are created and read back
#   - alice is refused (403) until a RoleBinding lets her in; bob stays refused
#   - server-side apply: a second field manager gets 409 Conflict, force takes over
#   - a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) denies a Lane
#   - stopping removes the server's temp data; a server whose --parent-pid
#     exits stops by itself
# Prints timings (start to READY, stop) and the server's peak RSS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CTL="$ROOT/scripts/kube-apiserver.sh"
BIN="$ROOT/target/kube-apiserver/kube-apiserver"

for tool in curl jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    # Debian's packages; a fresh machine may lack them (we are root there, as CI is).
    echo "smoke: installing $tool (Debian package)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool"; } >/dev/null 2>&1 || true
  fi
  command -v "$tool" >/dev/null 2>&1 || { echo "smoke: error: $tool is required and could not be installed" >&2; exit 1; }
done

OUT="$(mktemp -d -t lane-kube-smoke.XXXXXX)"
OUT2=""
cleanup() {
  local rc=$?
  "$CTL" stop "$OUT" >/dev/null 2>&1 || true
  [ -n "$OUT2" ] && { "$CTL" stop "$OUT2" >/dev/null 2>&1 || true; }
  if [ "$rc" -ne 0 ] && [ -f "$OUT/kube-apiserver.log" ]; then
    echo "---- last lines of the server log ----" >&2
    tail -n 40 "$OUT/kube-apiserver.log" >&2
  fi
  rm -rf "$OUT" ${OUT2:+"$OUT2"}
  exit "$rc"
}
trap cleanup EXIT

ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; [ -f "$OUT/body" ] && cat "$OUT/body" >&2 && echo >&2; exit 1; }

ms() { date +%s%3N; }

"$CTL" build

t0=$(ms)
KUBECONFIG_PATH="$("$CTL" start "$OUT")"
t1=$(ms)
echo "start to READY: $((t1 - t0)) ms (kubeconfig: $KUBECONFIG_PATH)"
# shellcheck disable=SC1091
. "$OUT/env"

# req USER METHOD PATH [BODY [CONTENT-TYPE]] -> prints the HTTP status, body in $OUT/body
req() {
  local who="$1" method="$2" path="$3" body="${4:-}" ctype="${5:-application/json}"
  local token
  case "$who" in
    admin) token="$KUBE_TOKEN_ADMIN" ;;
    alice) token="$KUBE_TOKEN_ALICE" ;;
    bob) token="$KUBE_TOKEN_BOB" ;;
    *) echo "unknown user $who" >&2; return 1 ;;
  esac
  local args=(-sS -o "$OUT/body" -w '%{http_code}' --cacert "$KUBE_CA_FILE"
    -H "Authorization: Bearer $token" -H "Accept: application/json" -X "$method")
  if [ -n "$body" ]; then
    args+=(-H "Content-Type: $ctype" --data-binary "$body")
  fi
  curl "${args[@]}" "$KUBE_SERVER$path"
}

# expect STATUS USER METHOD PATH [BODY [CONTENT-TYPE]]
expect() {
  local want="$1"; shift
  local got
  got="$(req "$@")"
  [ "$got" = "$want" ] || fail "$2 $3 as $1: HTTP $got, expected $want"
}

# eventually SECONDS STATUS USER METHOD PATH [BODY [CONTENT-TYPE]]: retry until
# the status is as expected (RBAC, CRD and policy changes reach the serving
# path through informers, a moment after the write)
eventually() {
  local secs="$1" want="$2"; shift 2
  local deadline=$((SECONDS + secs)) got
  while :; do
    got="$(req "$@")"
    [ "$got" = "$want" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && fail "$2 $3 as $1: HTTP $got, expected $want within ${secs}s"
    sleep 0.2
  done
}

# --- the server ------------------------------------------------------------
expect 200 admin GET /version
ok "version $(jq -r .gitVersion "$OUT/body")"
expect 200 admin GET /apis/admissionregistration.k8s.io/v1
jq -e '.resources[] | select(.name == "validatingadmissionpolicies")' "$OUT/body" >/dev/null \
  || fail "admissionregistration.k8s.io/v1 does not serve validatingadmissionpolicies"
ok "admissionregistration.k8s.io/v1 serves validatingadmissionpolicies"
req alice POST /apis/authentication.k8s.io/v1/selfsubjectreviews \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' >/dev/null
[ "$(jq -r '.status.userInfo.username' "$OUT/body")" = alice ] || fail "alice's token does not authenticate as alice"
jq -e '.status.userInfo.groups | index("lane-developers")' "$OUT/body" >/dev/null || fail "alice is not in lane-developers"
ok "alice authenticates, groups $(jq -c .status.userInfo.groups "$OUT/body")"

# --- CRD -------------------------------------------------------------------
CRD='{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "lanes.lane.dev"},
  "spec": {
    "group": "lane.dev",
    "scope": "Namespaced",
    "names": {"plural": "lanes", "singular": "lane", "kind": "Lane", "listKind": "LaneList"},
    "versions": [{
      "name": "v1alpha1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
          "spec": {"type": "object", "properties": {
            "image": {"type": "string"},
            "replicas": {"type": "integer", "minimum": 0}
          }},
          "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
      }}
    }]
  }
}'
expect 201 admin POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$CRD"
t_crd=$(ms)
deadline=$((SECONDS + 30))
until req admin GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/lanes.lane.dev >/dev/null \
  && jq -e '.status.conditions[]? | select(.type == "Established" and .status == "True")' "$OUT/body" >/dev/null; do
  [ "$SECONDS" -ge "$deadline" ] && fail "CRD lanes.lane.dev not Established after 30s"
  sleep 0.1
done
ok "CRD lanes.lane.dev Established after $(($(ms) - t_crd)) ms ($(jq -c '[.status.conditions[] | .type + "=" + .status]' "$OUT/body"))"
eventually 30 200 admin GET /apis/lane.dev/v1alpha1
ok "lane.dev/v1alpha1 discovery lists $(jq -c '[.resources[].name]' "$OUT/body")"

# --- namespace and a Lane ----------------------------------------------------
expect 201 admin POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"lane-smoke"}}'
LANES=/apis/lane.dev/v1alpha1/namespaces/lane-smoke/lanes
eventually 10 201 admin POST "$LANES" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"image":"shop/checkout:1"}}'
expect 200 admin GET "$LANES/checkout"
[ "$(jq -r .spec.image "$OUT/body")" = "shop/checkout:1" ] || fail "Lane read back with a different spec"
ok "Lane lane-smoke/checkout created and read back (uid $(jq -r .metadata.uid "$OUT/body"))"
expect 422 admin POST "$LANES" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"bad"},"spec":{"replicas":-1}}'
ok "schema validation: replicas -1 refused (422)"

# --- RBAC --------------------------------------------------------------------
expect 403 alice GET "$LANES/checkout"
ok "alice without RBAC: 403 ($(jq -r .message "$OUT/body"))"
expect 201 admin POST /apis/rbac.authorization.k8s.io/v1/namespaces/lane-smoke/roles '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
  "metadata": {"name": "lane-editor"},
  "rules": [{"apiGroups": ["lane.dev"], "resources": ["lanes"],
             "verbs": ["get", "list", "watch", "create", "update", "patch"]}]
}'
expect 201 admin POST /apis/rbac.authorization.k8s.io/v1/namespaces/lane-smoke/rolebindings '{
  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
  "metadata": {"name": "alice-lane-editor"},
  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lane-editor"},
  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
}'
eventually 10 200 alice GET "$LANES/checkout"
ok "alice after RoleBinding: 200"
expect 403 bob GET "$LANES/checkout"
ok "bob (not bound): still 403"
expect 403 alice DELETE "$LANES/checkout"
ok "alice cannot delete (verb not granted): 403"

# --- server-side apply ---------------------------------------------------------
APPLY=application/apply-patch+yaml
expect 200 alice PATCH "$LANES/checkout?fieldManager=lane-a" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"replicas":2}}' "$APPLY"
ok "apply by lane-a: replicas $(jq .spec.replicas "$OUT/body")"
expect 409 alice PATCH "$LANES/checkout?fieldManager=lane-b" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"replicas":3}}' "$APPLY"
[ "$(jq -r .reason "$OUT/body")" = Conflict ] || fail "409 without reason Conflict"
jq -e '.details.causes[] | select(.field == ".spec.replicas")' "$OUT/body" >/dev/null || fail "conflict does not name .spec.replicas"
ok "apply by lane-b: 409 ($(jq -r .message "$OUT/body"))"
expect 200 alice PATCH "$LANES/checkout?fieldManager=lane-b&force=true" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"replicas":3}}' "$APPLY"
owner="$(jq -r '[.metadata.managedFields[] | select(.fieldsV1["f:spec"]["f:replicas"]) | .manager] | join(",")' "$OUT/body")"
[ "$owner" = lane-b ] || fail "after force, .spec.replicas is owned by '$owner', expected lane-b"
ok "forced apply by lane-b: replicas $(jq .spec.replicas "$OUT/body"), owned by $owner"

# --- ValidatingAdmissionPolicy ---------------------------------------------------
expect 201 admin POST /apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies '{
  "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
  "metadata": {"name": "lane-replicas-limit"},
  "spec": {
    "failurePolicy": "Fail",
    "matchConstraints": {"resourceRules": [{"apiGroups": ["lane.dev"], "apiVersions": ["*"],
      "operations": ["CREATE", "UPDATE"], "resources": ["lanes"]}]},
    "validations": [{"expression": "!has(object.spec.replicas) || object.spec.replicas <= 5",
                     "message": "a lane runs at most 5 replicas"}]
  }
}'
expect 201 admin POST /apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings '{
  "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
  "metadata": {"name": "lane-replicas-limit"},
  "spec": {"policyName": "lane-replicas-limit", "validationActions": ["Deny"]}
}'
eventually 20 422 alice PATCH "$LANES/checkout?fieldManager=lane-b" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"replicas":9}}' "$APPLY"
jq -r .message "$OUT/body" | grep -q 'at most 5 replicas' || fail "422 but not from the policy"
ok "ValidatingAdmissionPolicy denies replicas 9: $(jq -r .message "$OUT/body")"
expect 200 alice PATCH "$LANES/checkout?fieldManager=lane-b" \
  '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"checkout"},"spec":{"replicas":4}}' "$APPLY"
ok "and admits replicas 4"

expect 200 admin DELETE "$LANES/checkout"
expect 404 admin GET "$LANES/checkout"
ok "Lane deleted"

# --- resources, stop -------------------------------------------------------------
pid="$KUBE_APISERVER_PID"
rss_peak_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")"
rss_now_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")"
echo "server RSS: peak $((rss_peak_kb / 1024)) MiB, now $((rss_now_kb / 1024)) MiB"
data_dir="$(sed -n 's/.*lane kube-apiserver: data in \([^ "]*\).*/\1/p' "$OUT/kube-apiserver.log" | head -n 1)"
[ -n "$data_dir" ] && [ -d "$data_dir" ] || fail "cannot find the server's data dir in its log"
t0=$(ms)
"$CTL" stop "$OUT"
t1=$(ms)
kill -0 "$pid" 2>/dev/null && fail "server pid $pid still alive after stop"
[ -e "$data_dir" ] && fail "data dir $data_dir still exists after stop"
ok "stopped in $((t1 - t0)) ms; $data_dir removed"

# --- a server whose parent dies stops by itself ------------------------------------
OUT2="$(mktemp -d -t lane-kube-smoke2.XXXXXX)"
sleep 600 &
parent=$!
KUBE_APISERVER_PARENT_PID=$parent "$CTL" start "$OUT2" >/dev/null
. "$OUT2/env"
pid2="$KUBE_APISERVER_PID"
kill "$parent"
wait "$parent" 2>/dev/null || true
deadline=$((SECONDS + 40))
while kill -0 "$pid2" 2>/dev/null; do
  [ "$SECONDS" -ge "$deadline" ] && fail "server $pid2 still alive 40s after its --parent-pid exited"
  sleep 0.1
done
grep -q "parent process $parent exited" "$OUT2/kube-apiserver.log" || fail "server $pid2 exited, but not because of its parent"
ok "server stops by itself when its --parent-pid exits"

echo "smoke: all passed"
