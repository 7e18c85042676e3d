#!/usr/bin/env bash
# Content-layer benchmark (`make bench` runs this). Prints, for the same bytes in the same run:
#   - raw SHA-256 MB/s (one thread, 256 KiB pieces) and Shoal's import MB/s, and their ratio;
#   - the npm peer `ipfs-unixfs-importer` on the same file, and Shoal's speed-up over it;
#   - peak RSS (/usr/bin/time -v) of importing, cat-ing and exporting a 1 GiB file, and of
#     fetching it over the trustless gateway (server + client in one process) into a new store.
# Targets: import >= 80% of raw SHA-256, >= 5x the peer, peak RSS < 64 MiB. Exits non-zero if
# a root CID differs from the peer's; the targets are reported, not enforced (speed depends on
# the machine).
#
# Environment: BENCH_DIR (scratch, default /tmp/shoal-content-bench), BENCH_MIB (size of the
# throughput file, default 256), MEM_MIB (size of the memory file, default 1024), ROUNDS (speed
# figures are the best of this many runs, default 3: other load on the machine only slows runs).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${BENCH_DIR:-/tmp/shoal-content-bench}"
BENCH_MIB="${BENCH_MIB:-256}"
MEM_MIB="${MEM_MIB:-1024}"
ROUNDS="${ROUNDS:-3}"
PEER="$ROOT/content/tests/js-unixfs"

if [ ! -d "$PEER/node_modules/ipfs-unixfs-importer" ]; then
    echo "the npm peer is not installed: run \`npm ci --prefix content/tests/js-unixfs\`" >&2
    exit 1
fi
if [ ! -x /usr/bin/time ]; then
    echo "/usr/bin/time is missing: \`apt-get install -y time\`" >&2
    exit 1
fi

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p shoal-content --example content_bench
BIN="$ROOT/target/release/examples/content_bench"

rm -rf "$DIR"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

json() { # json KEY LINE: the value of KEY in a one-line JSON object
    node -e 'const o = JSON.parse(process.argv[1]); console.log(o[process.argv[2]])' "$2" "$1"
}

echo "== throughput: ${BENCH_MIB} MiB of pseudo-random bytes"
"$BIN" gen "$DIR/bench.bin" $((BENCH_MIB * 1024 * 1024)) 42
for profile in kubo-v1 unixfs-v0-2015 unixfs-v1-2025; do
    ours="$("$BIN" compare "$DIR/bench.bin" "$profile" "$ROUNDS")"
    # The peer gets the same best-of-ROUNDS treatment (one process per round).
    peer_ms=""
    for _ in $(seq "$ROUNDS"); do
        peer="$(node "$PEER/import.mjs" "$profile" "$DIR/bench.bin")"
        ms="$(json ms "$peer")"
        peer_ms="$(node -e "console.log(Math.min($ms, ${peer_ms:-Infinity}))")"
    done
    our_root="$(json root "$ours")"
    peer_root="$(json cid "$peer")"
    if [ "$our_root" != "$peer_root" ]; then
        echo "root CID differs from the peer ($profile): shoal $our_root, peer $peer_root" >&2
        exit 1
    fi
    sha="$(json sha256_mb_s "$ours")"
    imp="$(json import_mb_s "$ours")"
    peer_mb_s="$(node -e "console.log(($BENCH_MIB * 1048576 / 1e6 / ($peer_ms / 1000)).toFixed(1))")"
    node -e "
      const [sha, imp, peer] = [$sha, $imp, $peer_mb_s]
      console.log('$profile'.padEnd(15), 'sha256', sha.toFixed(1).padStart(7), 'MB/s | import', imp.toFixed(1).padStart(7),
        'MB/s =', (100 * imp / sha).toFixed(0).padStart(3) + '% of sha256 | npm peer', peer.toFixed(1).padStart(6),
        'MB/s -> x' + (imp / peer).toFixed(1), '| root $our_root')"
done
store_line="$("$BIN" import "$DIR/bench.bin" "$DIR/bench-store")"
echo "import into FsBlockStore (kubo-v1, writes $(json blocks "$store_line") block files): $(json mb_s "$store_line") MB/s"
rm -rf "$DIR/bench.bin" "$DIR/bench-store"

echo "== memory: ${MEM_MIB} MiB file, peak RSS from /usr/bin/time -v"
"$BIN" gen "$DIR/mem.bin" $((MEM_MIB * 1024 * 1024)) 7
rss() { # rss LABEL CMD...: runs CMD under /usr/bin/time -v, prints its JSON line and peak RSS
    local label="$1"
    shift
    /usr/bin/time -v -o "$DIR/time.txt" "$@" >"$DIR/out.json"
    local kb
    kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time.txt")"
    printf '%-8s peak RSS %6.1f MiB  %s\n' "$label" "$(awk "BEGIN {print $kb / 1024}")" "$(cat "$DIR/out.json")"
}
rss import "$BIN" import "$DIR/mem.bin" "$DIR/mem-store"
cid="$(json root "$(cat "$DIR/out.json")")"
rss cat "$BIN" cat "$DIR/mem-store" "$cid"
rss export "$BIN" export "$DIR/mem-store" "$cid" "$DIR/mem.out"
cmp "$DIR/mem.bin" "$DIR/mem.out"
echo "exported file is identical to the input"
rm -f "$DIR/mem.out"
rss fetch "$BIN" fetch "$DIR/mem-store" "$cid" "$DIR/fetched-store"
rss cat "$BIN" cat "$DIR/fetched-store" "$cid"
