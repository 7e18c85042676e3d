#!/usr/bin/env bash
# The latency benchmark (`make bench-latency`, issue 15): open-loop echo-hash submissions over
# small cached files at each offered rate for a few seconds, over HTTP to a fresh release stack
# per rate (Redis, gateway, 2 workers × 8 slots, verification none), every result waited for by
# its client; then the BullMQ no-op baseline (loadtest/bullmq, `npm ci` by `make js-peers`) at
# the same rates in the same run. Writes docs/performance/latency-<date>.{json,md}: percentiles,
# achieved rates, backlog growth, the highest sustainable rates, CPU and load, Shoal/BullMQ
# ratios, and where a Shoal job's time goes. First, on a stack of its own with a verifier, the
# memoised repeats: one job verified and accepted, then its identical spec submitted MEMOISED
# times in a row, each answered from the memo, the gateway's time on each (Server-Timing) and the
# round trip (issue 15: p99 under 1 ms of server time). A few minutes.
#
# The workers keep their run directories (each job's /outputs) on a tmpfs when /dev/shm is one,
# as the README advises for small jobs: on ext4 without a journal (this machine's root), the
# inode allocator passes over every inode deleted in the last minute or more, and each job's
# output file is one, so file creation slowed as a run went on (docs/performance/
# latency-2026-12-08-guest.md). RUNS_DIR=disk keeps them in the stack's home.
#
# Knobs (environment): RATES (comma-separated), SECS (per rate), DRAIN (s), MEMOISED (repeats;
# 0 skips them), REPORT (prefix), RUNS_DIR (disk).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-cli -p shoal-loadtest

RATES=${RATES:-250,500,1000,1500}
SECS=${SECS:-10}
DRAIN=${DRAIN:-20}
MEMOISED=${MEMOISED:-3000}
REPORT=${REPORT:-docs/performance/latency-$(date -u +%Y-%m-%d)}

memoised=()
if [ "$MEMOISED" != 0 ]; then memoised=(--memoised "$MEMOISED"); fi

runs_dir=()
if [ "${RUNS_DIR:-}" != disk ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  runs=$(mktemp -d /dev/shm/shoal-latency.XXXXXX)
  trap 'rm -rf "$runs"' EXIT
  runs_dir=(--runs-dir "$runs")
fi

target/release/shoal-loadtest latency \
  --shoal target/release/shoal \
  ${runs_dir[@]+"${runs_dir[@]}"} \
  --rates "$RATES" \
  --secs "$SECS" \
  --drain-secs "$DRAIN" \
  ${memoised[@]+"${memoised[@]}"} \
  --report "$REPORT"
