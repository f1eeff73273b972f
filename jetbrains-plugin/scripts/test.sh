#!/usr/bin/env bash
# The JetBrains plugin's tests that run without JetBrains' repositories: the `core` module (Maven,
# Maven Central only) with its unit tests, the wire test against the real `lane lsp` (LANE_BIN,
# default ../target/debug/lane), the data wire test against it and a real Redis (started by
# ../scripts/services.sh redis) and the drift test against `lane lsp --describe`.
#
# Every version is pinned, so after the first run Maven needs no network (cache: ~/.m2).
# Java 17+ and Maven 3.8+ come from the machine; where they are missing and apt-get can install
# them (root), they are installed. Otherwise: exit 77 ("skipped"), or exit 1 under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

export LANE_BIN="${LANE_BIN:-$(cd .. && pwd)/target/debug/lane}"

missing() {
    local m=()
    command -v java >/dev/null 2>&1 || m+=(java)
    command -v mvn >/dev/null 2>&1 || m+=(mvn)
    echo "${m[@]:-}"
}

if [[ -n "$(missing)" ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Java and Maven (missing: $(missing))"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null
fi
if [[ -n "$(missing)" ]]; then
    echo "error: the JetBrains plugin's tests need Java 17+ and Maven; missing: $(missing)" >&2
    if [[ "${CI:-}" == "true" ]]; then exit 1; fi
    exit 77
fi
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
if [[ "${java_major%%.*}" -lt 17 ]]; then
    echo "error: Java 17 or newer is needed; java is $java_major" >&2
    exit 1
fi

if [[ ! -x "$LANE_BIN" ]]; then
    echo "error: $LANE_BIN is not an executable; build it (cargo build -p lane) or set LANE_BIN" >&2
    exit 1
fi

# DataWireTest moves a lane's data through a real Redis: the project's script starts it (installing
# it when missing; idempotent) and says where it listens (LANE_TEST_REDIS_URL).
# Without it (and not under CI) DataWireTest is skipped, saying why; under CI=true it is an error.
if ! bash ../scripts/services.sh redis; then
    echo "error: Redis could not be started for DataWireTest (scripts/services.sh redis)" >&2
    if [[ "${CI:-}" == "true" ]]; then exit 1; fi
fi
eval "$(bash ../scripts/services.sh env)"
export LANE_TEST_REDIS_URL

cd core
rm -rf target/surefire-reports
rc=0
# -B still leaves colour resets in Maven 3.8's output; strip them.
mvn -B -q -Dstyle.color=never test 2>&1 | sed 's/\x1b\[[0-9;]*m//g' || rc=$?
passed=0 failed=0
attr() { grep -o -m1 "<testsuite [^>]*" "$2" | grep -o " $1=\"[0-9]*\"" | grep -o "[0-9]*" || echo 0; }
for f in target/surefire-reports/TEST-*.xml; do
    [[ -f "$f" ]] || continue
    t=$(attr tests "$f") fl=$(attr failures "$f") er=$(attr errors "$f") sk=$(attr skipped "$f")
    passed=$((passed + t - fl - er - sk))
    failed=$((failed + fl + er))
done
echo "jetbrains-core: $passed passed, $failed failed"
if [[ "$rc" -ne 0 ]]; then exit "$rc"; fi
if [[ "$passed" -eq 0 ]]; then
    echo "error: no test ran" >&2
    exit 1
fi
