#!/usr/bin/env bash
# Installs what Shoal's build, tests and demo need on a Debian machine, skipping what is there.
# Run as root (or with sudo available). Idempotent.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v bzip2 >/dev/null || need+=(bzip2)
[ -x /usr/bin/time ] || need+=(time)   # peak-memory figures of make bench
command -v cc >/dev/null || need+=(gcc)
command -v chromium >/dev/null || need+=(chromium)   # the dashboard's browser test
# The OCI runtime (shoal-oci) and its tests: runc runs the containers, umoci and busybox-static
# build the test image, containers-common ships the default seccomp profile the sandbox applies.
command -v runc >/dev/null || need+=(runc)
command -v umoci >/dev/null || need+=(umoci)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -f /usr/share/containers/seccomp.json ] || need+=(golang-github-containers-common)
command -v debootstrap >/dev/null || need+=(debootstrap)   # scripts/build-sklearn-image.sh
# Rust: rustup's toolchain if present; otherwise Debian's rustc-web (1.85, new enough for the workspace).
command -v cargo >/dev/null || need+=(rustc-web cargo-web)

source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install install-deps ${need[@]+"${need[@]}"}
