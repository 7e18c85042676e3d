#!/usr/bin/env bash
# The Filecoin retrieval run (`make filecoin`): DATASETS jobs, each over a dataset only
# storage-provider stand-ins hold (the cheapest of three serving wrong bytes once paid), bought
# by WORKERS `shoal worker` processes under a wallet limit worth AFFORDABLE cold retrievals,
# one worker SIGKILLed mid-run and started again; then the same datasets as new jobs with the
# limit raised (the workers hold what they bought). Checks every failure is budget_exhausted,
# every output's digest against the dataset's bytes, and the ledger's books against the
# vouchers the providers accepted. Writes $OUT/retrieval-<date>.{json,md}; exits non-zero if a
# check failed. About two minutes after the build.
#
# Knobs (environment): DATASETS (100), AFFORDABLE (60), WORKERS (4), OUT (docs/filecoin).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-cli -p shoal-loadtest

DATASETS=${DATASETS:-100}
AFFORDABLE=${AFFORDABLE:-60}
WORKERS=${WORKERS:-4}
OUT=${OUT:-docs/filecoin}
DATE=$(date -u +%Y-%m-%d)
BIN=target/release

"$BIN/shoal-loadtest" filecoin --shoal "$BIN/shoal" --datasets "$DATASETS" --affordable "$AFFORDABLE" \
  --workers "$WORKERS" --report "$OUT/retrieval-$DATE"
