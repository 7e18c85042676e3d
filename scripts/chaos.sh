#!/usr/bin/env bash
# The full chaos run (`make chaos`): 10,000 jobs through the HTTP API of a stack the harness
# starts itself on loopback (private redis-server, one gateway, worker processes sharing a block
# store, two verifiers re-executing every result), while a worker is SIGKILLed every few seconds
# and replaced, a verifier is SIGKILLed now and then and replaced under a new id, a worker is
# paused (SIGSTOP/SIGCONT) now and then, Redis is killed and restarted once and the gateway
# once. Every output CID is checked against one computed independently, and every result must
# be decided on by a verifier. Writes docs/reliability/chaos-<date>.{json,md,svg}; exits
# non-zero unless every job finished once with the expected output, verified.
#
# Knobs (environment): JOBS, WORKERS, KILL_EVERY (s), REPLACE (new-id|same-id|none),
# KILL_VERIFIER_EVERY (s), PAUSE_EVERY (s), REDIS_AT (s), GATEWAY_AT (s), OUTSTANDING,
# DEADLINE (s), REPORT (prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-cli -p shoal-loadtest

JOBS=${JOBS:-10000}
WORKERS=${WORKERS:-3}
KILL_EVERY=${KILL_EVERY:-5}
REPLACE=${REPLACE:-new-id}
KILL_VERIFIER_EVERY=${KILL_VERIFIER_EVERY:-20}
PAUSE_EVERY=${PAUSE_EVERY:-45}
REDIS_AT=${REDIS_AT:-30}
GATEWAY_AT=${GATEWAY_AT:-60}
OUTSTANDING=${OUTSTANDING:-200}
# The build above plus this stays under the 30 minutes `make chaos` is allowed.
DEADLINE=${DEADLINE:-1200}
REPORT=${REPORT:-docs/reliability/chaos-$(date -u +%Y-%m-%d)}

exec target/release/shoal-loadtest chaos \
  --shoal target/release/shoal \
  --jobs "$JOBS" \
  --workers "$WORKERS" \
  --max-outstanding "$OUTSTANDING" \
  --kill-every-secs "$KILL_EVERY" \
  --replace "$REPLACE" \
  --verifiers 2 \
  --verification always \
  --kill-verifier-every-secs "$KILL_VERIFIER_EVERY" \
  --pause-every-secs "$PAUSE_EVERY" \
  --pause-for-secs 5 \
  --restart-redis-at "$REDIS_AT" \
  --restart-gateway-at "$GATEWAY_AT" \
  --stall-secs 120 \
  --deadline-secs "$DEADLINE" \
  --report "$REPORT"
