#!/usr/bin/env bash
# The byzantine runs (`make byzantine`): real worker processes on loopback of which a fraction
# lie (`shoal-loadtest adversary-worker`, harness code no `shoal` flag reaches), `shoal verifier`
# processes deciding on every result, each run after an honest baseline of the same command.
#   ten-percent    10,000 jobs of the reliability mix over 2,000 inputs (so that every shard, and
#                  so every worker, gets work), 10 % of 30 workers adversarial
#   third          10,000 jobs, 33 % of 30 workers adversarial, colluders among them
#   cloud-detect   cloud detection fanned out over 10,000 real-format Landsat scenes, 10 % of
#                  20 workers adversarial, every mask checked against the harness's own run
# Writes docs/byzantine/<run>-<date>.{json,md}; exits non-zero unless every run passed: no wrong
# result accepted, at least 99.9 % accepted, every adversary quarantined, throughput at least
# 70 % (10 %) or 50 % (33 %) of the honest baseline's.
#
# Knobs (environment): JOBS, SCENES, RUNS (space-separated subset of the three), OUT (directory).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-cli -p shoal-loadtest

JOBS=${JOBS:-10000}
SCENES=${SCENES:-10000}
RUNS=${RUNS:-ten-percent third cloud-detect}
OUT=${OUT:-docs/byzantine}
DATE=$(date -u +%Y-%m-%d)
BIN=target/release
COMMON=(--shoal "$BIN/shoal" --verifiers 3 --shards 256 --worker-concurrency 1 --heartbeat-ms 1000
  --stall-secs 300 --deadline-secs 2400 --quiet)

status=0
for run in $RUNS; do
  case $run in
    ten-percent)
      args=(--jobs "$JOBS" --inputs 2000 --workers 30 --malicious-fraction 0.1 --kinds liar,sleeper,rare
        --max-outstanding 400 --min-throughput-ratio 0.7) ;;
    third)
      args=(--jobs "$JOBS" --inputs 2000 --workers 30 --malicious-fraction 0.333
        --kinds liar,lazy,colluding,sleeper,rare,forger --max-outstanding 400 --min-throughput-ratio 0.5) ;;
    cloud-detect)
      args=(--scenes "$SCENES" --workers 20 --malicious-fraction 0.1 --kinds liar,colluding
        --min-throughput-ratio 0.7) ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
  echo "== $run"
  "$BIN/shoal-loadtest" byzantine "${COMMON[@]}" "${args[@]}" --report "$OUT/$run-$DATE" || status=1
done
exit $status
