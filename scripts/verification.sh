#!/usr/bin/env bash
# The verification run (`make verification`): the nondeterministic ML training job
# (programs/ml-train on the handwritten digits, no --seed) under each verification strategy —
# tolerance on metrics.json#/held_out_accuracy, and the ml-compare comparator — every result
# re-executed (`always`) by a `shoal verifier` process:
#   honest         HONEST jobs per strategy on an honest worker: false disagreements (must be 0),
#                  the spread of the honest held-out accuracies, verifier CPU against worker CPU
#   adversaries    each ML adversary kind (fabricated-metrics, few-epochs, stolen-weights,
#                  random-weights) alone on a stack of its own, handed up to LIES jobs one at a
#                  time until quarantined: which lies each strategy catches
# Writes $OUT/ml-<date>.{json,md}; exits non-zero unless every honest job agreed under both
# strategies and the comparator caught and quarantined every kind.
#
# Knobs (environment): HONEST (50), LIES (3), TOLERANCE (0.04), OUT (docs/verification).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f data/digits/digits.csv ] || scripts/fetch-data.sh
cargo build --release -p shoal-cli -p shoal-loadtest

HONEST=${HONEST:-50}
LIES=${LIES:-3}
TOLERANCE=${TOLERANCE:-0.04}
OUT=${OUT:-docs/verification}
DATE=$(date -u +%Y-%m-%d)
BIN=target/release

"$BIN/shoal-loadtest" verification --shoal "$BIN/shoal" --honest "$HONEST" --lies "$LIES" \
  --tolerance "$TOLERANCE" --report "$OUT/ml-$DATE"
