#!/usr/bin/env bash
# Real data servers for the tests: MariaDB, Redis and an Apache Kafka broker on loopback, as the
# current user, on non-default ports, with their files under a cache directory.
#
#   scripts/services.sh [mariadb|redis|kafka|all]        install when missing, start when not running
#   scripts/services.sh stop [mariadb|redis|kafka|all]   stop what this script started
#   scripts/services.sh env                        print the addresses as `export` lines
#   scripts/services.sh client                     install mariadb-client (mysqldump, mysql) when missing
#
# Idempotent: a server that already answers is left alone. Missing programs are installed from
# Debian's packages (apt-get; as root, or through passwordless sudo). Kafka runs from its own jars,
# resolved from Maven Central by Maven (tests/kafka/pom.xml; ~/.m2 is the download cache) with the
# machine's JDK, as one KRaft node (broker and controller). When anything cannot be installed or
# started the script exits non-zero; it never skips.
#
# Addresses (override to use servers of your own; the script then only checks they answer):
#   LANE_TEST_MYSQL_URL  default mysql://lane:lane@127.0.0.1:${LANE_TEST_MYSQL_PORT:-23306}
#   LANE_TEST_REDIS_URL  default redis://127.0.0.1:${LANE_TEST_REDIS_PORT:-26379}
#   LANE_TEST_KAFKA_BOOTSTRAP  default 127.0.0.1:${LANE_TEST_KAFKA_PORT:-31092} (its controller
#                        listens on ${LANE_TEST_KAFKA_CONTROLLER_PORT:-31093})
#   LANE_TEST_KAFKA_SASL_BOOTSTRAP  default 127.0.0.1:${LANE_TEST_KAFKA_SASL_PORT:-31094}: the same
#                        broker's SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
#                        user `lane`, password `lane-secret`
# Files: ${LANE_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lane/services}/{mariadb,redis,kafka}
set -euo pipefail

dir="${LANE_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lane/services}"
mysql_port="${LANE_TEST_MYSQL_PORT:-23306}"
redis_port="${LANE_TEST_REDIS_PORT:-26379}"
mysql_url_default="mysql://lane:lane@127.0.0.1:${mysql_port}"
redis_url_default="redis://127.0.0.1:${redis_port}"
kafka_port="${LANE_TEST_KAFKA_PORT:-31092}"
kafka_controller_port="${LANE_TEST_KAFKA_CONTROLLER_PORT:-31093}"
kafka_bootstrap_default="127.0.0.1:${kafka_port}"
kafka_sasl_port="${LANE_TEST_KAFKA_SASL_PORT:-31094}"
kafka_sasl_bootstrap_default="127.0.0.1:${kafka_sasl_port}"
# What a running broker of this script must have been started with (written to its ready file): a
# broker started by an older version of the script, or for other ports, is restarted.
kafka_config="config 2: plaintext $kafka_port, controller $kafka_controller_port, sasl $kafka_sasl_port"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
user="$(id -un)"

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Runs apt-get as root: directly, or through sudo without a password.
apt_install() {
  local run=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || die "need root or passwordless sudo to apt-get install $*"
    run=(sudo -n)
  fi
  command -v apt-get >/dev/null || die "apt-get is missing; install $* yourself or set the LANE_TEST_*_URL variables"
  say "installing $* from Debian's packages"
  # The packages' own services are not wanted: keep maintainer scripts from starting them.
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${run[@]}" tee "$policy" >/dev/null
    "${run[@]}" chmod +x "$policy"
    added=1
  fi
  local rc=0
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "apt-get install failed; updating the package lists and trying again"
    "${run[@]}" apt-get update -q >/dev/null
    rc=0
    "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null || rc=$?
  fi
  if [ "$added" -eq 1 ]; then "${run[@]}" rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get install $* failed"
}

find_prog() {
  local p
  for p in "$@"; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return 0; fi
    if [ -x "/usr/sbin/$p" ]; then echo "/usr/sbin/$p"; return 0; fi
  done
  return 1
}

# host and port of a URL like scheme://[user[:pw]@]host:port[/...]
url_host() { local r="${1#*://}"; r="${r##*@}"; r="${r%%/*}"; echo "${r%:*}"; }
url_port() { local r="${1#*://}"; r="${r##*@}"; r="${r%%/*}"; echo "${r##*:}"; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local host="$1" port="$2" what="$3" log="$4" i
  for i in $(seq 1 300); do
    port_open "$host" "$port" && return 0
    sleep 0.1
  done
  [ -f "$log" ] && tail -n 20 "$log" >&2
  die "$what did not start listening on $host:$port in 30s (log: $log)"
}

mariadb_up() {
  if [ -n "${LANE_TEST_MYSQL_URL:-}" ]; then
    port_open "$(url_host "$LANE_TEST_MYSQL_URL")" "$(url_port "$LANE_TEST_MYSQL_URL")" \
      || die "LANE_TEST_MYSQL_URL=$LANE_TEST_MYSQL_URL does not answer"
    return 0
  fi
  local d="$dir/mariadb"
  if port_open 127.0.0.1 "$mysql_port" && [ -f "$d/ready" ]; then
    say "mariadb already running on 127.0.0.1:$mysql_port"
    return 0
  fi
  port_open 127.0.0.1 "$mysql_port" && die "port $mysql_port is taken by something that is not this script's MariaDB"
  local mariadbd install_db client
  if ! mariadbd="$(find_prog mariadbd mysqld)" || ! install_db="$(find_prog mariadb-install-db mysql_install_db)" \
     || ! client="$(find_prog mariadb mysql)"; then
    apt_install mariadb-server mariadb-client
    mariadbd="$(find_prog mariadbd mysqld)" || die "mariadbd is missing after the install"
    install_db="$(find_prog mariadb-install-db mysql_install_db)" || die "mariadb-install-db is missing"
    client="$(find_prog mariadb mysql)" || die "the mariadb client is missing"
  fi
  mkdir -p "$d"
  rm -f "$d/ready"
  if [ ! -d "$d/data/mysql" ]; then
    say "initialising a MariaDB data directory in $d/data"
    rm -rf "$d/data"
    "$install_db" --no-defaults --datadir="$d/data" --user="$user" --skip-test-db \
      --auth-root-authentication-method=socket >"$d/install.log" 2>&1 \
      || { tail -n 20 "$d/install.log" >&2; die "mariadb-install-db failed (log: $d/install.log)"; }
  fi
  say "starting MariaDB on 127.0.0.1:$mysql_port"
  setsid "$mariadbd" --no-defaults --datadir="$d/data" --socket="$d/mysqld.sock" \
    --port="$mysql_port" --bind-address=127.0.0.1 --pid-file="$d/mysqld.pid" \
    --log-error="$d/error.log" --user="$user" --skip-name-resolve \
    --innodb-buffer-pool-size=64M --max-connections=500 </dev/null >/dev/null 2>&1 9>&- &
  wait_port 127.0.0.1 "$mysql_port" MariaDB "$d/error.log"
  # The tests' account: lane/lane over TCP from loopback, allowed everything (creates databases).
  "$client" --no-defaults --socket="$d/mysqld.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'lane'@'127.0.0.1' IDENTIFIED BY 'lane';
    GRANT ALL PRIVILEGES ON *.* TO 'lane'@'127.0.0.1' WITH GRANT OPTION;
    FLUSH PRIVILEGES;" || die "could not create the test account"
  touch "$d/ready"
}

redis_up() {
  if [ -n "${LANE_TEST_REDIS_URL:-}" ]; then
    port_open "$(url_host "$LANE_TEST_REDIS_URL")" "$(url_port "$LANE_TEST_REDIS_URL")" \
      || die "LANE_TEST_REDIS_URL=$LANE_TEST_REDIS_URL does not answer"
    return 0
  fi
  local d="$dir/redis"
  if port_open 127.0.0.1 "$redis_port"; then
    say "redis already running on 127.0.0.1:$redis_port"
    return 0
  fi
  local server
  if ! server="$(find_prog redis-server)"; then
    apt_install redis-server
    server="$(find_prog redis-server)" || die "redis-server is missing after the install"
  fi
  mkdir -p "$d"
  say "starting Redis on 127.0.0.1:$redis_port"
  "$server" --port "$redis_port" --bind 127.0.0.1 --dir "$d" --daemonize yes \
    --pidfile "$d/redis.pid" --logfile "$d/redis.log" --databases 64 --save "" \
    --appendonly no >/dev/null 9>&- || die "redis-server failed to start (log: $d/redis.log)"
  wait_port 127.0.0.1 "$redis_port" Redis "$d/redis.log"
}

# The broker's class path: Kafka's jars and their dependencies, resolved by Maven from
# tests/kafka/pom.xml into a directory named after the pom's checksum (a changed pom resolves
# anew). Prints the directory.
kafka_jars() {
  local pom="$repo_root/tests/kafka/pom.xml" sum lib
  [ -f "$pom" ] || die "$pom is missing"
  sum="$(sha256sum "$pom" | cut -c1-16)"
  lib="$dir/kafka/lib-$sum"
  if [ ! -f "$lib/.complete" ]; then
    local mvn
    if ! command -v java >/dev/null 2>&1 || ! mvn="$(find_prog mvn)"; then
      apt_install openjdk-17-jdk-headless maven
      command -v java >/dev/null 2>&1 || die "java is missing after the install"
      mvn="$(find_prog mvn)" || die "mvn is missing after the install"
    fi
    say "resolving Kafka's jars from Maven Central into $lib (~/.m2 caches the downloads)"
    rm -rf "$lib"
    mkdir -p "$lib"
    "$mvn" -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$lib" >"$dir/kafka/mvn.log" 2>&1 \
      || { tail -n 30 "$dir/kafka/mvn.log" >&2; die "mvn could not resolve Kafka's jars (log: $dir/kafka/mvn.log)"; }
    ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $lib after mvn"
    touch "$lib/.complete"
  fi
  echo "$lib"
}

kafka_up() {
  if [ -n "${LANE_TEST_KAFKA_BOOTSTRAP:-}" ]; then
    local first="${LANE_TEST_KAFKA_BOOTSTRAP%%,*}"
    port_open "${first%:*}" "${first##*:}" \
      || die "LANE_TEST_KAFKA_BOOTSTRAP=$LANE_TEST_KAFKA_BOOTSTRAP does not answer"
    if [ -n "${LANE_TEST_KAFKA_SASL_BOOTSTRAP:-}" ]; then
      first="${LANE_TEST_KAFKA_SASL_BOOTSTRAP%%,*}"
      port_open "${first%:*}" "${first##*:}" \
        || die "LANE_TEST_KAFKA_SASL_BOOTSTRAP=$LANE_TEST_KAFKA_SASL_BOOTSTRAP does not answer"
    fi
    return 0
  fi
  local d="$dir/kafka"
  if port_open 127.0.0.1 "$kafka_port" && [ -f "$d/ready" ]; then
    if [ "$(cat "$d/ready")" = "$kafka_config" ]; then
      say "kafka already running on 127.0.0.1:$kafka_port (SASL on $kafka_sasl_port)"
      return 0
    fi
    # Started by an older version of this script (no SASL listener) or with other ports.
    local was
    was="$(head -c 100 "$d/ready" | tr '\n' ' ')"
    say "restarting the Kafka broker: it runs ${was:-the configuration of an older version of this script (no SASL listener)}"
    kafka_stop
  fi
  port_open 127.0.0.1 "$kafka_port" && die "port $kafka_port is taken by something that is not this script's Kafka broker"
  port_open 127.0.0.1 "$kafka_controller_port" && die "port $kafka_controller_port (Kafka's controller) is taken"
  port_open 127.0.0.1 "$kafka_sasl_port" && die "port $kafka_sasl_port (Kafka's SASL listener) is taken"
  mkdir -p "$d"
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
  local lib cp
  lib="$(kafka_jars)"
  cp="$(printf '%s:' "$lib"/*.jar)"
  rm -f "$d/ready"
  # One node that is broker and controller, on loopback; no automatic topics, no delays. Clients
  # connect without authentication on PLAINTEXT, or as `lane`/`lane-secret` on SASL_PLAINTEXT
  # (PLAIN checks the JAAS user list; SCRAM the credentials stored at format time).
  cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller_port,SASL_PLAINTEXT://127.0.0.1:$kafka_sasl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_PLAINTEXT://127.0.0.1:$kafka_sasl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_lane="lane-secret";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$d/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  # Formatted for other ports or other jars, or without the SCRAM users (by an older version of
  # this script; `scram-for` names the cluster formatted with them): format again.
  local cluster
  cluster="$(sed -n 's/^cluster.id=//p' "$d/data/meta.properties" 2>/dev/null || true)"
  if [ "$(cat "$d/formatted-with" 2>/dev/null)" != "$lib $kafka_controller_port" ] \
     || [ -z "$cluster" ] || [ "$(cat "$d/scram-for" 2>/dev/null)" != "$cluster" ]; then
    rm -rf "$d/data" "$d/formatted-with" "$d/scram-for"
  fi
  local jvm=(java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
    -Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info -cp "$cp")
  if [ ! -f "$d/data/meta.properties" ]; then
    say "formatting Kafka's storage in $d/data"
    rm -rf "$d/data"
    local id
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$d/server.properties" \
      --add-scram 'SCRAM-SHA-256=[name=lane,password=lane-secret]' \
      --add-scram 'SCRAM-SHA-512=[name=lane,password=lane-secret]' >"$d/format.log" 2>&1 \
      || { tail -n 20 "$d/format.log" >&2; die "formatting Kafka's storage failed (log: $d/format.log)"; }
    echo "$lib $kafka_controller_port" >"$d/formatted-with"
    echo "$id" >"$d/scram-for"
  fi
  say "starting Kafka on 127.0.0.1:$kafka_port (controller on $kafka_controller_port, SASL on $kafka_sasl_port)"
  setsid "${jvm[@]}" kafka.Kafka "$d/server.properties" </dev/null >"$d/server.log" 2>&1 9>&- &
  local pid=$! i
  echo "$pid" >"$d/kafka.pid"
  # Ready when the broker says so (it has registered with its controller) and its port answers.
  for i in $(seq 1 600); do
    grep -q 'Kafka Server started' "$d/server.log" && port_open 127.0.0.1 "$kafka_port" \
      && port_open 127.0.0.1 "$kafka_sasl_port" && break
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$d/server.log" >&2; die "the Kafka broker exited (log: $d/server.log)"; }
    sleep 0.1
  done
  if ! grep -q 'Kafka Server started' "$d/server.log"; then
    tail -n 30 "$d/server.log" >&2
    die "the Kafka broker did not start in 60s (log: $d/server.log)"
  fi
  echo "$kafka_config" >"$d/ready"
}

# Stops this script's broker and waits until its ports are free.
kafka_stop() {
  local d="$dir/kafka" i
  rm -f "$d/ready"
  [ -f "$d/kafka.pid" ] || return 0
  stop_pidfile "$d/kafka.pid" Kafka
  for i in $(seq 1 300); do
    port_open 127.0.0.1 "$kafka_port" || port_open 127.0.0.1 "$kafka_sasl_port" \
      || port_open 127.0.0.1 "$kafka_controller_port" || return 0
    sleep 0.1
  done
  die "the Kafka broker still listens 30s after it was told to stop"
}

stop_pidfile() {
  local pidfile="$1" what="$2" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    say "stopping $what (pid $pid)"
    local i
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

which_ones() {
  case "${1:-all}" in
    all) echo "mariadb redis kafka" ;;
    mariadb|redis|kafka) echo "$1" ;;
    *) die "unknown service \`$1\`; use mariadb, redis, kafka or all" ;;
  esac
}

# An unknown name is an error here (inside `$(which_ones ...)` it would only end a subshell).
case "${1:-all}" in env|stop|all|mariadb|redis|kafka|client) ;; *) which_ones "$1" ;; esac
[ "${1:-}" != stop ] || which_ones "${2:-all}" >/dev/null

case "${1:-all}" in
  env)
    echo "export LANE_TEST_MYSQL_URL=${LANE_TEST_MYSQL_URL:-$mysql_url_default}"
    echo "export LANE_TEST_REDIS_URL=${LANE_TEST_REDIS_URL:-$redis_url_default}"
    echo "export LANE_TEST_KAFKA_BOOTSTRAP=${LANE_TEST_KAFKA_BOOTSTRAP:-$kafka_bootstrap_default}"
    echo "export LANE_TEST_KAFKA_SASL_BOOTSTRAP=${LANE_TEST_KAFKA_SASL_BOOTSTRAP:-$kafka_sasl_bootstrap_default}"
    ;;
  stop)
    for s in $(which_ones "${2:-all}"); do
      case "$s" in
        mariadb) rm -f "$dir/mariadb/ready"; stop_pidfile "$dir/mariadb/mysqld.pid" MariaDB ;;
        redis) stop_pidfile "$dir/redis/redis.pid" Redis ;;
        kafka) kafka_stop ;;
      esac
    done
    ;;
  client)
    # The data benchmark compares against mysqldump | mysql.
    if ! command -v mysqldump >/dev/null || ! command -v mysql >/dev/null; then
      apt_install mariadb-client
      command -v mysqldump >/dev/null || die "mysqldump is missing after installing mariadb-client"
    fi
    ;;
  *)
    # One caller at a time (tests may call this concurrently).
    mkdir -p "$dir"
    exec 9>"$dir/lock"
    flock 9
    for s in $(which_ones "${1:-all}"); do
      case "$s" in
        mariadb) mariadb_up ;;
        redis) redis_up ;;
        kafka) kafka_up ;;
      esac
    done
    ;;
esac
