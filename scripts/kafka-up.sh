#!/usr/bin/env bash
# Start a single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1:$KAFKA_PORT for development and tests. No Docker: the broker's
# jars come from Maven Central and run on the local Java 17.
#
# Idempotent: exits 0 at once when a broker already answers on the port.
#   --fresh          stop our broker (if running) and wipe its data dir first
#   --fresh-if-down  use a broker that answers; else wipe the data dir, then start
#                    (npm test: every test topic is new, and a data dir that grows
#                    run after run makes each start after a kill recover it all)
#
# Env: KAFKA_PORT (9092; the controller listens on KAFKA_PORT+1),
#      WEIR_CACHE (~/.cache/weir: jars, data dir, logs; outside the repo),
#      KAFKA_STATE_DIR (WEIR_CACHE: where the data dir and logs go).
#
# Why Kafka 3.9.x and not 4.x: Kafka 4.0 removed old protocol API versions
# (KIP-896), and kafkajs 2.2.4 (its last release, 2023) was never tested
# against it; 3.9 still accepts every API version kafkajs knows. 3.9 is the
# last 3.x line, runs on Java 17, and runs KRaft without ZooKeeper.
set -euo pipefail

KAFKA_VERSION=3.9.1
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
STATE="${KAFKA_STATE_DIR:-$CACHE}"  # a second broker (tests) gets its own
DATA="$STATE/kafka-data"   # log.dirs; reused across restarts, wiped by --fresh
RUN="$STATE/kafka-run"     # server.properties, log4j config, pid file, logs
PIDFILE="$RUN/kafka.pid"
HERE="$(cd "$(dirname "$0")" && pwd)"
KAFKAJS="$HERE/../node_modules/kafkajs"

fresh=0
fresh_if_down=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    --fresh-if-down) fresh_if_down=1 ;;
    *) echo "kafka-up: unknown argument '$arg' (--fresh or --fresh-if-down)" >&2; exit 2 ;;
  esac
done

log() { echo "kafka-up: $*" >&2; }

# Cheap check first: does anything accept TCP on the port?
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Run "$1" (JS, with a connected kafkajs `admin` in scope) against the broker,
# with the same client the project uses; exit status 0 iff it resolved.
with_admin() {
  KAFKAJS="$KAFKAJS" PORT="$PORT" RETRIES="${2:-0}" node -e '
    const { Kafka, logLevel } = require(process.env.KAFKAJS);
    const admin = new Kafka({ brokers: ["127.0.0.1:" + process.env.PORT],
      clientId: "kafka-up-probe", logLevel: logLevel.NOTHING, connectionTimeout: 1000,
      requestTimeout: 5000, retry: { retries: Number(process.env.RETRIES) } }).admin();
    admin.connect().then(() => ('"$1"')).then(() => admin.disconnect())
      .then(() => process.exit(0), () => process.exit(1));
  ' 2>/dev/null
}

# Real check: TCP connect, then a Kafka Metadata round trip.
answers() { port_open && with_admin 'admin.listTopics()'; }

our_pid() {  # prints the pid of the broker we started, if it is still alive
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

if [ ! -d "$KAFKAJS" ]; then
  log "kafkajs not found at $KAFKAJS (run npm ci first); it is used to probe the broker"
  exit 1
fi

if [ "$fresh" = 1 ]; then
  bash "$HERE/kafka-down.sh" --wipe
  if port_open; then
    log "--fresh: port $PORT is still in use by something kafka-up did not start"
    exit 1
  fi
fi

if answers; then
  log "broker already answering on 127.0.0.1:$PORT"
  exit 0
fi

if [ "$fresh_if_down" = 1 ]; then
  bash "$HERE/kafka-down.sh" --wipe
fi

# (a) Jars. Fetch into a temp dir and rename, so an interrupted download never
# looks like a complete cache. reload4j + slf4j-reload4j are what the official
# Kafka 3.9 tarball ships for logging; the kafka_2.13 pom leaves the slf4j
# binding out, and without one slf4j silently drops every broker log line.
if [ ! -d "$LIBS" ]; then
  log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and dependencies via Maven (first run only)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>weir.local</groupId><artifactId>kafka-jars</artifactId><version>0</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>1.2.25</version></dependency>
  </dependencies>
</project>
EOF
  mkdir -p "$(dirname "$LIBS")"
  # Maven 3.8 prints stray ANSI codes even with -q -B: keep its output unless it fails.
  if ! (cd "$tmp" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp/libs") >"$tmp/mvn.log" 2>&1; then
    cat "$tmp/mvn.log" >&2
    log "Maven could not fetch the Kafka jars (needs Maven Central)"
    exit 1
  fi
  rm -rf "$LIBS" && mv "$tmp/libs" "$LIBS"
fi

# (b) Something on the port that is not (yet) an answering broker.
if port_open && ! our_pid >/dev/null; then
  log "port $PORT is open but does not answer as Kafka, and it is not our broker"
  exit 1
fi

# (c) Config, storage format, start, wait.
mkdir -p "$DATA" "$RUN/logs"
cat >"$RUN/server.properties" <<EOF
# Written by scripts/kafka-up.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
num.partitions=1
auto.create.topics.enable=true
# One node: every internal topic must live with replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Fewer internal partitions than the default 50: faster first consumer-group join.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
# Tests start consumers and expect the group to form at once.
group.initial.rebalance.delay.ms=0
# Crash tests restart a processor and let the group drop the dead member fast.
group.min.session.timeout.ms=1000
EOF
# Log to files (rotated), never to the terminal.
cat >"$RUN/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$RUN/logs/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF

# The heap and collector settings of Kafka's own start scripts (kafka-server-start.sh,
# kafka-run-class.sh). With a smaller heap, its young collections come every few
# hundred ms under a changelog's transactions, and each pauses every client of the
# broker. Its collections go to logs/gc.log (wall-clock times).
JAVA_OPTS=(-server -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true
  "-Xlog:gc:file=$RUN/logs/gc.log:time,uptime:filecount=2,filesize=10M"
  "-Dlog4j.configuration=file:$RUN/log4j.properties" "-Dkafka.logs.dir=$RUN/logs")

if [ ! -f "$DATA/meta.properties" ]; then
  cluster_id="$(java -cp "$LIBS/*" "${JAVA_OPTS[@]}" kafka.tools.StorageTool random-uuid)"
  java -cp "$LIBS/*" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$RUN/server.properties" >"$RUN/logs/format.log" 2>&1
fi

if ! pid="$(our_pid)"; then
  # setsid + nohup: the broker outlives this shell and its terminal.
  nohup setsid java -cp "$LIBS/*" "${JAVA_OPTS[@]}" kafka.Kafka "$RUN/server.properties" \
    >"$RUN/logs/kafka.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
fi

# Alive = the process exists and is not a zombie. Not our_pid: between the
# fork above and nohup's exec of java, /proc/$pid/cmdline is still this
# script's, and on a busy machine the first check lands in that gap.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  local stat; stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"          # the fields after "(comm) "; comm may hold spaces
  [ "${stat%% *}" != Z ]
}

start=$SECONDS
until answers; do
  if ! alive "$pid"; then
    log "broker (pid $pid) exited during start; last errors from $RUN/logs/server.log:"
    grep -h ERROR "$RUN/logs/server.log" | tail -n 5 | cut -c1-300 >&2 || true
    tail -n 5 "$RUN/logs/kafka.out" >&2 || true
    exit 1
  fi
  if [ $((SECONDS - start)) -ge 90 ]; then
    log "broker (pid $pid) did not answer within 90 s; see $RUN/logs/server.log (scripts/kafka-down.sh stops it)"
    exit 1
  fi
  sleep 0.5
done
# Touch a consumer group once so the broker creates __consumer_offsets now:
# otherwise the first consumer of every fresh broker waits for it and kafkajs
# logs "The group coordinator is not available" (at ERROR) while it retries.
if ! with_admin 'admin.describeGroups(["kafka-up-warmup"])' 10; then
  log "broker answers but its group coordinator did not come up; see $RUN/logs/server.log"
  exit 1
fi
log "broker $KAFKA_VERSION up on 127.0.0.1:$PORT (pid $pid, ${SECONDS}s; logs in $RUN/logs)"
