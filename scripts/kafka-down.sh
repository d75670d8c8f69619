#!/usr/bin/env bash
# Stop the Kafka broker that scripts/kafka-up.sh started (found by its pid
# file; a broker started some other way is left alone). Idempotent.
#   --wipe   also delete the data dir, so the next kafka-up starts empty
#
# Env: WEIR_CACHE (~/.cache/weir) and KAFKA_STATE_DIR, as for kafka-up.sh.
set -euo pipefail

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${KAFKA_STATE_DIR:-$CACHE}"
DATA="$STATE/kafka-data"
PIDFILE="$STATE/kafka-run/kafka.pid"
TIMEOUT_S=30   # a clean KRaft shutdown takes a few seconds; past this, SIGKILL

wipe=0
for arg in "$@"; do
  case "$arg" in
    --wipe) wipe=1 ;;
    *) echo "kafka-down: unknown argument '$arg' (only --wipe)" >&2; exit 2 ;;
  esac
done

# The pid must still be a kafka.Kafka JVM: pids get reused after a reboot.
is_broker() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q 'kafka\.Kafka'; }

if [ -f "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  if is_broker "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq $((TIMEOUT_S * 5))); do
      is_broker "$pid" || break
      sleep 0.2
    done
    if is_broker "$pid"; then
      echo "kafka-down: broker (pid $pid) still running after ${TIMEOUT_S}s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      # Wait for the kernel to reap it so the ports and the data-dir lock are free.
      while is_broker "$pid"; do sleep 0.1; done
    fi
    echo "kafka-down: stopped broker (pid $pid)" >&2
  fi
  rm -f "$PIDFILE"
fi

if [ "$wipe" = 1 ]; then
  rm -rf "$DATA"
  echo "kafka-down: wiped $DATA" >&2
fi
