#!/usr/bin/env bash
# The pipeline run (`make pipeline`): the three-stage cloud pipeline (cloud-detect on each of
# SCENES windows of the real Landsat scene, cloud-remove where detect's stats.json puts
# cloud_fraction over 0.05, cloud-summary over both) submitted through POST /v1/pipelines to
# WORKERS worker processes, then the same jobs submitted separately stage by stage (the
# baseline), then the pipeline again with a worker SIGKILLed and Redis restarted mid-run.
# Checks remove's scenes against the detect stats read independently, the summary's counts,
# the faulted run's outputs against the clean one's; reports locality, Redis commands per job
# and the pipeline's time against the baseline's.
# Writes $OUT/cloud-<SCENES>-<date>.{json,md}; exits non-zero unless every check held.
#
# Knobs (environment): SCENES (10000), WORKERS (4), OUT (docs/pipelines).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f data/landsat/LC80200392015216LGN00/LC80200392015216LGN00_MTL.txt ] || scripts/fetch-data.sh
cargo build --release -p shoal-cli -p shoal-loadtest

SCENES=${SCENES:-10000}
WORKERS=${WORKERS:-4}
OUT=${OUT:-docs/pipelines}
DATE=$(date -u +%Y-%m-%d)
BIN=target/release

"$BIN/shoal-loadtest" pipeline --shoal "$BIN/shoal" --scenes "$SCENES" --workers "$WORKERS" \
  --report "$OUT/cloud-$SCENES-$DATE"
