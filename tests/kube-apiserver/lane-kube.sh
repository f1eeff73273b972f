#!/usr/bin/env bash
# lane-kube's output against the real kube-apiserver in this directory (curl + jq):
#   - deploy/crd.yaml (generated from lane_kube::crd::Lane) is accepted as YAML and becomes
#     Established; discovery lists the short name `ln`
#   - a Lane is created; the schema refuses a bad parent and a missing expiry (422)
#   - the status subresource takes a status; the server's Table view (what `kubectl get lanes`
#     prints) has the printer columns, filled in
#   - deploy/environment-crd.yaml likewise; a LaneEnvironment, a bad one refused, its status and
#     printer columns
#   - every lane Deployment in server/kube/tests/golden/*.json passes the server's validation
#     (dry run): labels, selector against the pod labels, owner references
# Exit 77 when there is no Go toolchain to build the server (CI=true makes that an error).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CTL="$ROOT/scripts/kube-apiserver.sh"

for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "lane-kube.sh: error: $tool is required (tests/kube-apiserver/smoke.sh installs it)" >&2; exit 1; }
done

if ! command -v go >/dev/null 2>&1 && [ ! -x "$ROOT/target/kube-apiserver/kube-apiserver" ]; then
  [ "${CI:-}" = "true" ] && { echo "lane-kube.sh: error: no Go toolchain to build the kube-apiserver" >&2; exit 1; }
  echo "lane-kube.sh: skipped: no Go toolchain" >&2
  exit 77
fi

OUT="$(mktemp -d -t lane-kube-crd.XXXXXX)"
cleanup() {
  local rc=$?
  "$CTL" stop "$OUT" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ -f "$OUT/kube-apiserver.log" ]; then
    echo "---- last lines of the server log ----" >&2
    tail -n 20 "$OUT/kube-apiserver.log" >&2
  fi
  rm -rf "$OUT"
  exit "$rc"
}
trap cleanup EXIT

ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; [ -f "$OUT/body" ] && cat "$OUT/body" >&2 && echo >&2; exit 1; }

"$CTL" start "$OUT" >/dev/null
# shellcheck disable=SC1091
. "$OUT/env"

# req METHOD PATH [BODY [CONTENT-TYPE [ACCEPT]]] -> prints the HTTP status, body in $OUT/body
req() {
  local method="$1" path="$2" body="${3:-}" ctype="${4:-application/json}" accept="${5:-application/json}"
  local args=(-sS -o "$OUT/body" -w '%{http_code}' --cacert "$KUBE_CA_FILE"
    -H "Authorization: Bearer $KUBE_TOKEN_ADMIN" -H "Accept: $accept" -X "$method")
  [ -n "$body" ] && args+=(-H "Content-Type: $ctype" --data-binary "$body")
  curl "${args[@]}" "$KUBE_SERVER$path"
}
expect() {
  local want="$1"; shift
  local got
  got="$(req "$@")"
  [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, expected $want"
}

# --- the CRD -------------------------------------------------------------------
expect 201 POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$(cat "$ROOT/deploy/crd.yaml")" application/yaml
deadline=$((SECONDS + 30))
until req GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/lanes.lane.dev >/dev/null \
  && jq -e '.status.conditions[]? | select(.type == "Established" and .status == "True")' "$OUT/body" >/dev/null; do
  [ "$SECONDS" -ge "$deadline" ] && fail "deploy/crd.yaml: CRD not Established after 30s"
  sleep 0.1
done
ok "deploy/crd.yaml accepted and Established"
deadline=$((SECONDS + 30))
until [ "$(req GET /apis/lane.dev/v1alpha1)" = 200 ]; do
  [ "$SECONDS" -ge "$deadline" ] && fail "lane.dev/v1alpha1 not served after 30s"
  sleep 0.2
done
[ "$(jq -c '[.resources[] | select(.name == "lanes") | .shortNames[]]' "$OUT/body")" = '["ln"]' ] \
  || fail "discovery does not list the short name ln"
ok "discovery: lanes, short name ln"

# --- Lanes -------------------------------------------------------------------------
expect 201 POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"lanes"}}'
LANES=/apis/lane.dev/v1alpha1/namespaces/lanes/lanes
lane() { printf '{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"%s"},"spec":%s}' "$1" "$2"; }
deadline=$((SECONDS + 10))
until [ "$(req POST "$LANES" "$(lane feature-x '{"owner":"alice@example.com","parent":"team","expires":"2030-01-01T00:00:00Z","services":{"shop.cart":{"image":"registry.example/shop/cart:pr-1","version":"feat@0123abcd","replicas":2}}}')")" = 201 ]; do
  [ "$SECONDS" -ge "$deadline" ] && fail "POST a Lane"
  sleep 0.2
done
ok "Lane lanes/feature-x created"
expect 422 POST "$LANES" "$(lane bad '{"owner":"a","parent":"Bad_Parent","expires":"2030-01-01T00:00:00Z"}')"
ok "a bad parent is refused: $(jq -r .message "$OUT/body")"
expect 422 POST "$LANES" "$(lane bad '{"owner":"a"}')"
ok "a Lane without expires is refused"
expect 422 POST "$LANES" "$(lane bad '{"owner":"a","expires":"2030-01-01T00:00:00Z","services":{"shop.cart":{"image":"i","version":"v","replicas":-1}}}')"
ok "negative replicas are refused"
expect 200 PATCH "$LANES/feature-x/status" '{"status":{"phase":"Ready","services":1,"readyServices":1,
  "conditions":[{"type":"Ready","status":"True","reason":"AllReady","message":"","lastTransitionTime":"2030-01-01T00:00:00Z"}],
  "routes":[{"service":"shop.cart","host":"cart.shop.svc.cluster.local","lane":"feature-x","subset":"lane-feature-x"}]}}' \
  application/merge-patch+json
ok "status subresource takes phase, counts, conditions and routes"
expect 200 GET "$LANES" "" "" "application/json;as=Table;v=v1;g=meta.k8s.io"
columns="$(jq -c '[.columnDefinitions[].name]' "$OUT/body")"
[ "$columns" = '["Name","Owner","Parent","Services","Ready","Phase","Expires","Age"]' ] || fail "printer columns are $columns"
row="$(jq -c '.rows[0].cells[0:7]' "$OUT/body")"
[ "$row" = '["feature-x","alice@example.com","team",1,1,"Ready","2030-01-01T00:00:00Z"]' ] || fail "kubectl get lanes row is $row"
ok "kubectl get lanes: $columns $row"

# --- the LaneEnvironment CRD ------------------------------------------------------------
expect 201 POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$(cat "$ROOT/deploy/environment-crd.yaml")" application/yaml
deadline=$((SECONDS + 30))
until req GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/laneenvironments.lane.dev >/dev/null \
  && jq -e '.status.conditions[]? | select(.type == "Established" and .status == "True")' "$OUT/body" >/dev/null; do
  [ "$SECONDS" -ge "$deadline" ] && fail "deploy/environment-crd.yaml: CRD not Established after 30s"
  sleep 0.1
done
ok "deploy/environment-crd.yaml accepted and Established"
ENVS=/apis/lane.dev/v1alpha1/namespaces/lanes/laneenvironments
deadline=$((SECONDS + 10))
until [ "$(req POST "$ENVS" '{"apiVersion":"lane.dev/v1alpha1","kind":"LaneEnvironment","metadata":{"name":"dev"},"spec":{"production":{"namespace":"prod"}}}')" = 201 ]; do
  [ "$SECONDS" -ge "$deadline" ] && fail "POST a LaneEnvironment"
  sleep 0.2
done
expect 422 POST "$ENVS" '{"apiVersion":"lane.dev/v1alpha1","kind":"LaneEnvironment","metadata":{"name":"bad"},"spec":{"production":{"namespace":"Not_A_Namespace"}}}'
ok "a LaneEnvironment is created; a bad production namespace is refused"
expect 200 PATCH "$ENVS/dev/status" '{"status":{"services":2,"inSync":1,"lastSync":"2030-01-01T00:00:00Z",
  "baseline":[{"deployment":"cart","drift":"InSync","productionImage":"cart:2","baselineImage":"cart:2","lastSync":"2030-01-01T00:00:00Z"},
              {"deployment":"pay","drift":"Unknown","reason":"production has no Deployment pay in namespace prod"}]}}' \
  application/merge-patch+json
expect 200 GET "$ENVS" "" "" "application/json;as=Table;v=v1;g=meta.k8s.io"
columns="$(jq -c '[.columnDefinitions[].name]' "$OUT/body")"
[ "$columns" = '["Name","Production","Services","InSync","LastSync","Age"]' ] || fail "LaneEnvironment printer columns are $columns"
row="$(jq -c '.rows[0].cells[0:4]' "$OUT/body")"
[ "$row" = '["dev","prod",2,1]' ] || fail "kubectl get laneenvironments row is $row"
ok "kubectl get lenv: $columns $row"

# --- the plan's Deployments ------------------------------------------------------------
count=0
for golden in "$ROOT"/server/kube/tests/golden/*.json; do
  while IFS= read -r deployment; do
    ns="$(jq -r .metadata.namespace <<<"$deployment")"
    if [ "$(req GET "/api/v1/namespaces/$ns")" = 404 ]; then
      expect 201 POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}"
    fi
    got="$(req POST "/apis/apps/v1/namespaces/$ns/deployments?dryRun=All" "$deployment")"
    [ "$got" = 201 ] || fail "$(basename "$golden"): Deployment $ns/$(jq -r .metadata.name <<<"$deployment"): HTTP $got"
    count=$((count + 1))
  done < <(jq -c '.deployments[]' "$golden")
done
[ "$count" -gt 0 ] || fail "no Deployments in the golden files"
ok "$count lane Deployments from the golden files pass the server's validation (dry run)"
echo "lane-kube.sh: all passed"
