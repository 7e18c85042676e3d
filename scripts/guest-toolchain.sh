#!/usr/bin/env bash
# Builds Shoal's guest programs (programs/, its own Cargo workspace) for
# wasm32-wasip1, reproducibly, with Debian's packaged Rust toolchain.
#
# rustup's toolchain on Debian build machines has neither the wasm32-wasip1
# target nor rust-src, and the registries are the only network, so std is
# built from source with Debian's rustc-web (which ships its std sources in
# rust-web-src), linked by LLVM's wasm-ld against Debian's wasi-libc.
#
# usage: scripts/guest-toolchain.sh [install|build|check|all]
#   install  apt-get the toolchain packages (and python3) unless installed
#   build    install, build every guest, copy the modules to programs/wasm/
#            and rewrite programs/manifest.json (name, file, size, sha256, cid)
#   check    install, build from scratch in a temporary target directory and
#            fail unless every module is byte-identical to programs/wasm/ and
#            programs/manifest.json describes those files
#   all      same as build (default)
#
# Idempotent: installing skips packages already present, building reuses
# programs/target/ and leaves unchanged modules untouched. Packages are
# installed non-interactively, as root or through sudo.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo_root/scripts/apt-install.sh"
programs_dir="$repo_root/programs"
wasm_dir="$programs_dir/wasm"
manifest="$programs_dir/manifest.json"
packages=(rustc-web cargo-web rust-web-src wasi-libc lld-16 python3)
target=wasm32-wasip1
# Every guest binary, in manifest order.
guests=(cloud-detect cloud-remove cloud-summary cell-count echo-hash trap infinite-loop memory-bomb huge-output stack-overflow nondeterministic abuse ml-train ml-compare)

install_toolchain() {
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query --show --showformat='${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed \
            || missing+=("$package")
    done
    apt_install guest-toolchain "${missing[@]}"
}

# Builds every guest into the target directory $1.
cargo_build() {
    local target_dir="$1"
    local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    # Path remapping makes the modules independent of where the checkout, the
    # cargo registry, the std sources and the target directory live (panic
    # messages embed source paths); symbols and debug info are stripped by the
    # release profile, and one codegen unit with LTO keeps code generation
    # order-independent.
    local rustflags=(
        -C linker=/usr/lib/llvm-16/bin/wasm-ld
        -C link-self-contained=no
        -L /usr/lib/wasm32-wasi
        -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o
        "--remap-path-prefix=$programs_dir=/shoal/programs"
        "--remap-path-prefix=$cargo_home=/cargo"
        "--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src"
        "--remap-path-prefix=$target_dir=/shoal/target"
    )
    (
        cd "$programs_dir"
        # RUSTC_BOOTSTRAP lets the stable Debian toolchain use -Zbuild-std.
        RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$target_dir" \
            CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; echo "${rustflags[*]}")" \
            /usr/bin/cargo build --locked --release \
            -Zbuild-std=std,panic_abort --target "$target" \
            $(printf -- '--bin %s ' "${guests[@]}")
    )
}

# Writes (mode `write`) or verifies (mode `check`) programs/manifest.json for
# the modules in programs/wasm/: name, file, size, sha256 and cid, the CID
# `ipfs add --cid-version=1` gives the file. The CID is computed here, to
# kubo's defaults (256 KiB chunks, raw leaves, balanced DAG of at most 174
# links per node, sha2-256, CIDv1 in base32), and tests/tests/all/programs.rs
# recomputes it with shoal-content, so two independent implementations must
# agree. The importer is checked against kubo's own vectors before use.
manifest_tool() {
    python3 - "$1" "$manifest" "$programs_dir" "$target" "${guests[@]}" <<'PY'
import base64, hashlib, json, os, sys

CHUNK, MAX_LINKS = 256 * 1024, 174
RAW, DAG_PB = 0x55, 0x70


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire_type, value):
    """A protobuf field: a varint (wire type 0) or length-delimited bytes (2)."""
    key = varint(number << 3 | wire_type)
    return key + (varint(value) if wire_type == 0 else varint(len(value)) + value)


def cid_bytes(codec, block):
    return varint(1) + varint(codec) + b"\x12\x20" + hashlib.sha256(block).digest()


def unixfs_cid(data):
    if len(data) <= CHUNK:
        root = cid_bytes(RAW, data)
    else:
        # Per node: (cid, cumulative DAG size for the parent's Tsize, file bytes below it).
        level = []
        for i in range(0, len(data), CHUNK):
            chunk = data[i:i + CHUNK]
            level.append((cid_bytes(RAW, chunk), len(chunk), len(chunk)))
        while len(level) > 1:
            parents = []
            for i in range(0, len(level), MAX_LINKS):
                children = level[i:i + MAX_LINKS]
                filesize = sum(child[2] for child in children)
                # UnixFS Data: Type File (2), filesize, blocksizes.
                unixfs = field(1, 0, 2) + field(3, 0, filesize)
                unixfs += b"".join(field(4, 0, child[2]) for child in children)
                # dag-pb, canonical order: Links (Hash, Name "", Tsize), then Data.
                links = b"".join(
                    field(2, 2, field(1, 2, child[0]) + field(2, 2, b"") + field(3, 0, child[1]))
                    for child in children
                )
                block = links + field(1, 2, unixfs)
                tsize = len(block) + sum(child[1] for child in children)
                parents.append((cid_bytes(DAG_PB, block), tsize, filesize))
            level = parents
        root = level[0][0]
    return "b" + base64.b32encode(root).decode().lower().rstrip("=")


assert unixfs_cid(b"hello world\n") == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
assert (
    unixfs_cid(bytes(i % 251 for i in range(1 << 20)))
    == "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"
)

mode, manifest_path, programs_dir, target, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]


def entry_for(name):
    file = f"wasm/{name}.wasm"
    data = open(os.path.join(programs_dir, file), "rb").read()
    return {
        "name": name,
        "file": file,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "cid": unixfs_cid(data),
    }


if mode == "write":
    with open(manifest_path, "w") as out:
        json.dump({"target": target, "programs": [entry_for(name) for name in names]}, out, indent=2)
        out.write("\n")
    sys.exit(0)

manifest = json.load(open(manifest_path))
listed = [entry.get("name") for entry in manifest.get("programs", [])]
ok = manifest.get("target") == target and listed == names
if not ok:
    print(f"manifest lists {listed} for {manifest.get('target')}; expected {names} for {target}", file=sys.stderr)
for entry in manifest.get("programs", []):
    if entry.get("name") in names and entry != entry_for(entry["name"]):
        print(f"manifest has {entry}\n   the file is {entry_for(entry['name'])}", file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
PY
}

build() {
    install_toolchain
    local target_dir="$programs_dir/target"
    cargo_build "$target_dir"
    mkdir -p "$wasm_dir"
    local changed=0
    for name in "${guests[@]}"; do
        if ! cmp --quiet "$target_dir/$target/release/$name.wasm" "$wasm_dir/$name.wasm"; then
            cp "$target_dir/$target/release/$name.wasm" "$wasm_dir/$name.wasm"
            echo "guest-toolchain: updated $name.wasm"
            changed=1
        fi
    done
    if [[ "$changed" == 1 ]] || ! manifest_tool check 2>/dev/null; then
        manifest_tool write
        echo "guest-toolchain: rewrote programs/manifest.json"
    fi
    echo "guest-toolchain: ${#guests[@]} modules in $wasm_dir match programs/manifest.json"
}

check() {
    install_toolchain
    # Global, not local: the EXIT trap runs after this function has returned.
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    cargo_build "$scratch"
    local failed=0
    for name in "${guests[@]}"; do
        if ! cmp --quiet "$scratch/$target/release/$name.wasm" "$wasm_dir/$name.wasm"; then
            echo "guest-toolchain: $name.wasm differs from the committed module (run: $0 build)" >&2
            failed=1
        fi
    done
    if ! manifest_tool check; then
        echo "guest-toolchain: programs/manifest.json does not match programs/wasm/" >&2
        failed=1
    fi
    [[ "$failed" == 0 ]] || exit 1
    echo "guest-toolchain: all ${#guests[@]} modules rebuild byte-identically and match manifest.json"
}

case "${1:-all}" in
    install) install_toolchain ;;
    build | all) build ;;
    check) check ;;
    *)
        echo "usage: $0 [install|build|check|all]" >&2
        exit 2
        ;;
esac
