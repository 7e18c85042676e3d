#!/usr/bin/env bash
# The latency benchmark (`make bench-latency`, issue 15): open-loop echo-hash submissions over
# small cached files at each offered rate for a few seconds, over HTTP to a fresh release stack
# per rate (Redis, gateway, 2 workers × 8 slots, verification none), every result waited for by
# its client; then the BullMQ no-op baseline (loadtest/bullmq, `npm ci` by `make js-peers`) at
# the same rates in the same run. Writes docs/performance/latency-<date>.{json,md}: percentiles,
# achieved rates, backlog growth, the highest sustainable rates, CPU and load, Shoal/BullMQ
# ratios, and where a Shoal job's time goes. A few minutes.
#
# Knobs (environment): RATES (comma-separated), SECS (per rate), DRAIN (s), REPORT (prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-cli -p shoal-loadtest

RATES=${RATES:-250,500,1000,1500}
SECS=${SECS:-10}
DRAIN=${DRAIN:-20}
REPORT=${REPORT:-docs/performance/latency-$(date -u +%Y-%m-%d)}

exec target/release/shoal-loadtest latency \
  --shoal target/release/shoal \
  --rates "$RATES" \
  --secs "$SECS" \
  --drain-secs "$DRAIN" \
  --report "$REPORT"
