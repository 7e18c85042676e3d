#!/usr/bin/env bash
# Builds an OCI image layout of Python 3 and scikit-learn from Debian bookworm packages, with the
# digits training script of programs/sklearn-digits at /app: the container job of the README's
# "Container images". Usage: scripts/build-sklearn-image.sh [OUTDIR]  (default
# target/oci/sklearn-digits). Prints the layout's path on stdout.
#
# debootstrap (minbase, no Recommends) installs python3-sklearn and its dependencies, maintainer
# scripts included (they set the BLAS alternatives numpy links against); the build-only
# packages scipy drags in are purged; docs, man pages,
# locales, apt's lists and caches, the packages' test suites and /dev's nodes (which shoal-oci
# refuses in layers) are removed; umoci packs the tree as one layer and writes the config from
# programs/sklearn-digits/image-config.json. Needs root and the network to deb.debian.org;
# takes a few minutes. Not run by CI.
#
# Idempotent: OUTDIR is rebuilt only when this script, the training script or the image config
# changed since the last build (the key in OUTDIR.key); set REBUILD=1 to force. Package versions
# are whatever the mirror serves, so two builds may differ in digest.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/target/oci/sklearn-digits}
app=$repo/programs/sklearn-digits
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3-sklearn
# Downloaded .debs, kept so that a rebuild does not fetch them again.
cache=$repo/target/oci/debootstrap-cache
# Debian's python3-scipy depends on pythran, which depends on a C++ toolchain, boost and the
# Python and BLAS headers (500 MB): scipy only needs pythran to build, so they are purged.
build_only='^(python3-(pythran|beniget|gast|ply)|python3(\.11)?-dev|python3-all-dev|libpython3(\.11)?-dev|g\+\+(-12)?|gcc(-12)?|cpp(-12)?|lib[a-z0-9.+-]*-dev|linux-libc-dev|libc-dev-bin|rpcsvc-proto|binutils.*|libbinutils|libgprofng0|libctf(-nobfd)?0|lib(a|l|t|ub|hwa)san[0-9]+|libitm1|libcc1-0|libisl23|libmpc3|libmpfr6|libjansson4)$'

key=$(cat "${BASH_SOURCE[0]}" "$app/train_digits.py" "$app/image-config.json" | sha256sum | cut -d' ' -f1)
key="$key $suite $packages"
if [[ "${REBUILD:-0}" != 1 && -f "$out/index.json" && "$(cat "$out.key" 2>/dev/null)" == "$key" ]]; then
    echo "build-sklearn-image: $out is up to date" >&2
    echo "$out"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "build-sklearn-image: run as root (debootstrap and umoci unpack need it)" >&2
    exit 1
fi
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
source "$repo/scripts/apt-install.sh"
apt_install build-sklearn-image ${need[@]+"${need[@]}"}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

echo "build-sklearn-image: debootstrap $suite (minbase) + $packages" >&2
mkdir -p "$cache"
debootstrap --variant=minbase --include="$packages" --cache-dir="$cache" "$suite" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

chroot "$root" dpkg-query -W -f='${Package}\n' | grep -E "$build_only" >"$work/purge"
# --force-depends: python3-scipy's dependency on pythran is left broken on purpose.
chroot "$root" dpkg --purge --force-depends $(cat "$work/purge") >"$work/purge.log" 2>&1 || {
    tail -n 30 "$work/purge.log" >&2
    exit 1
}
# What a batch job never reads. The packages' own tests are not imported at run time.
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,linda,bug} \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/dev/*
find "$root/usr/lib/python3/dist-packages" -depth -type d -name tests -exec rm -rf {} +
mkdir -p "$root/app" "$root/outputs" "$root/inputs"
install -m 0644 "$app/train_digits.py" "$root/app/train_digits.py"

# The image: umoci's empty image, unpacked, its rootfs replaced by ours, repacked as one layer.
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --image "$layout:latest" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs"
mv "$root" "$work/bundle/rootfs"
umoci repack --image "$layout:latest" "$work/bundle"
config_args=$(python3 - "$app/image-config.json" <<'PY'
import json, shlex, sys
config = json.load(open(sys.argv[1]))
args = ["--clear=config.env", "--clear=config.cmd", "--clear=config.entrypoint"]
args += [f"--config.env={e}" for e in config["Env"]]
args += [f"--config.cmd={c}" for c in config["Cmd"]]
args += [f"--config.workingdir={config['WorkingDir']}", "--config.user=65534:65534"]
print(shlex.join(args))
PY
)
eval "umoci config --no-history --image $layout:latest $config_args"
umoci gc --layout "$layout"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$layout" "$out"
echo "$key" >"$out.key"
echo "build-sklearn-image: $out ($(du -sh "$out" | cut -f1) compressed)" >&2
echo "$out"
