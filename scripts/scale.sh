#!/usr/bin/env bash
# The scale simulation (`make scale`): real worker loops (`shoal_worker::serve`) in one process
# with a simulated executor over a synthetic catalogue whose blocks are never stored, a private
# redis-server and an in-process gateway taking jobs over HTTP. Three scenarios:
#   join: 100 workers, 100 TB catalogue, 10 start and 90 join mid-run;
#   wide: 1000 workers, 1 PB catalogue, 12 programs from 4 users submitting at once;
#   agreement: the same small workload twice, once on real processes (`shoal-loadtest
#     chaos --workload locality`: 8 `shoal worker`s, a 1000-item catalogue of real blobs, echo-hash)
#     and once simulated with matching parameters, its cost model set from the real run's
#     measured execution times (docs/scale/agreement-2026-11-25.md compares them).
# Writes docs/scale/<scenario>-<date>.{json,md,svg} (agreement: -real and -sim); exits non-zero
# if a run's success (accepted jobs that succeeded with the expected output) is below 99.9%.
#
# Knobs (environment): SCENARIOS ("join wide agreement" by default), DATE, and per scenario the
# options below (see `shoal-loadtest sim --help`, `shoal-loadtest chaos --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-join wide agreement}
if [[ " $SCENARIOS " == *" agreement "* ]]; then
  cargo build --release -p shoal-cli -p shoal-loadtest
else
  cargo build --release -p shoal-loadtest
fi

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
    agreement)
      workers=${AGREE_WORKERS:-8} cache=${AGREE_CACHE:-10MB} jobs=${AGREE_JOBS:-6000}
      real=(
        --workload locality --workers "$workers" --worker-concurrency 2 --shards 256
        --catalogue-items 1000 --item-bytes 500kB --cache-bytes "$cache"
        --users 4 --distinct-programs 8 --outstanding-per-user 8
        --duration-secs 300 --jobs "$jobs"
        --visibility-timeout-secs 30 --heartbeat-ms 3000 --bucket-secs 5 --quiet
      )
      echo "== agreement (real): $BIN chaos ${real[*]}" >&2
      "$BIN" chaos "${real[@]}" --report "docs/scale/agreement-$DATE-real" || status=$?
      args=(
        --workers "$workers" --concurrency 2 --start-spread-secs 0 --shards 256
        --catalogue 500MB --item 500kB --cache "$cache"
        --users 4 --programs 8 --outstanding-per-user 8
        --duration-secs 300 --max-jobs "$jobs" --time-scale 1
        --latency-ms 5 --bandwidth 50MB --compute-min-secs 0.025 --compute-max-secs 0.025
        --heartbeat-secs 3 --poll-block-ms 1000 --visibility-timeout-secs 30
        --bucket-secs 5 --quiet
      )
      scenario=agreement-$DATE-sim
      ;;
    *)
      echo "unknown scenario $scenario (join, wide, agreement)" >&2
      exit 2
      ;;
  esac
  report=docs/scale/$scenario
  [[ $scenario == agreement-* ]] || report=$report-$DATE
  echo "== $scenario: $BIN sim ${args[*]}" >&2
  "$BIN" sim "${args[@]}" --report "$report" || status=$?
done
exit "$status"
