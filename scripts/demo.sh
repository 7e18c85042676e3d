#!/usr/bin/env bash
# The demo: build, start the embedded stack, run cloud detection on the real Landsat scene through
# the gateway, download the result and print where the mask is.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENE=data/landsat/LC80200392015216LGN00
PROGRAM=programs/wasm/cloud-detect.wasm
OUT=out/cloud-detect
export SHOAL_HOME="${SHOAL_HOME:-$PWD/.shoal}"
PORT="${SHOAL_DEMO_PORT:-8080}"
CONTENT_PORT="${SHOAL_DEMO_CONTENT_PORT:-8081}"

[ -d "$SCENE" ] || { echo "the Landsat scene is missing: run scripts/fetch-data.sh" >&2; exit 1; }

echo "== building (release)"
cargo build --release -p shoal-cli
shoal=target/release/shoal

echo "== starting the embedded stack (redis-server, gateway, 2 workers, verifier, content server)"
mkdir -p "$SHOAL_HOME"
rm -f "$SHOAL_HOME/dev.json"
"$shoal" dev --port "$PORT" --content-port "$CONTENT_PORT" --workers 2 >"$SHOAL_HOME/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    [ -f "$SHOAL_HOME/dev.json" ] && break
    kill -0 $dev 2>/dev/null || { cat "$SHOAL_HOME/dev.log" >&2; exit 1; }
    sleep 0.1
done
[ -f "$SHOAL_HOME/dev.json" ] || { echo "shoal dev did not come up; see $SHOAL_HOME/dev.log" >&2; exit 1; }
sed -n '2,7p' "$SHOAL_HOME/dev.log" | grep -v '^$' || true

echo "== adding the scene and the program"
scene_cid=$("$shoal" add "$SCENE")
program_cid=$("$shoal" add "$PROGRAM")
echo "scene    $SCENE -> $scene_cid"
echo "program  $PROGRAM -> $program_cid"

echo "== running cloud-detect"
output_cid=$("$shoal" run --program "$program_cid" --input "$scene_cid:/inputs")
echo "output   $output_cid"

rm -rf "$OUT"
mkdir -p out
"$shoal" get "$output_cid" -o "$OUT"
fraction=$(python3 - "$OUT/stats.json" <<'PY'
import json, sys
print("%.2f" % (json.load(open(sys.argv[1]))["cloud_fraction"] * 100))
PY
)

echo
echo "cloud mask : $PWD/$OUT/mask.png"
echo "preview    : $PWD/$OUT/preview.png   (scene | mask)"
echo "stats      : $PWD/$OUT/stats.json"
echo "cloud fraction: $fraction %"

# At a terminal the stack stays up, so the job can be looked at in the dashboard.
if [ -t 0 ]; then
    key=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["api_key"])' "$SHOAL_HOME/dev.json")
    echo
    echo "dashboard  : http://127.0.0.1:$PORT/ui   (API key: $key)"
    read -r -p "Press Enter to stop the stack. "
fi
