#!/usr/bin/env bash
# The scale simulation (`make scale`): real worker loops (`shoal_worker::serve`) in one process
# with a simulated executor over a synthetic catalogue whose blocks are never stored, a private
# redis-server and an in-process gateway taking jobs over HTTP. Two scenarios:
#   join: 100 workers, 100 TB catalogue, 10 start and 90 join mid-run;
#   wide: 1000 workers, 1 PB catalogue, 12 programs from 4 users submitting at once.
# Writes docs/scale/<scenario>-<date>.{json,md,svg}; exits non-zero if a scenario's success
# (accepted jobs that succeeded with the expected output) is below 99.9%.
#
# Knobs (environment): SCENARIOS ("join wide" by default), DATE, and per scenario the options
# below (see `shoal-loadtest sim --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-loadtest

SCENARIOS=${SCENARIOS:-join wide}
DATE=${DATE:-$(date -u +%Y-%m-%d)}
BIN=target/release/shoal-loadtest
status=0

for scenario in $SCENARIOS; do
  case "$scenario" in
    join)
      args=(
        --workers "${JOIN_WORKERS:-100}" --initial-workers "${JOIN_INITIAL:-10}"
        --join-at-secs "${JOIN_AT:-150}" --start-spread-secs 2
        --duration-secs "${JOIN_DURATION:-300}"
        --catalogue 100TB --item 1GB --cache 2TB
        --users 3 --programs 10 --outstanding-per-user "${JOIN_OUTSTANDING:-20}"
        --time-scale "${JOIN_TIME_SCALE:-0.05}"
        --shards 4096 --heartbeat-secs 3 --poll-block-ms 1000
        --bucket-secs 5
      )
      ;;
    wide)
      args=(
        --workers "${WIDE_WORKERS:-1000}" --start-spread-secs "${WIDE_SPREAD:-20}"
        --duration-secs "${WIDE_DURATION:-150}"
        --catalogue 1PB --item 1GB --cache 2TB
        --users 4 --programs 12 --outstanding-per-user "${WIDE_OUTSTANDING:-150}"
        --time-scale "${WIDE_TIME_SCALE:-0.1}"
        --shards "${WIDE_SHARDS:-4096}" --shard-replicas "${WIDE_REPLICAS:-1}"
        --heartbeat-secs "${WIDE_HEARTBEAT:-5}" --poll-block-ms "${WIDE_POLL_BLOCK_MS:-1000}"
        --visibility-timeout-secs 30 --redis-connections 16
        --bucket-secs 10 --stall-secs 120
      )
      ;;
    *)
      echo "unknown scenario $scenario (join, wide)" >&2
      exit 2
      ;;
  esac
  echo "== $scenario: $BIN sim ${args[*]}" >&2
  "$BIN" sim "${args[@]}" --report "docs/scale/$scenario-$DATE" || status=$?
done
exit "$status"
