# Sourced by the project's scripts: `apt_install WHO PACKAGE...` installs Debian packages
# non-interactively, as root or through sudo; WHO prefixes its messages. Nothing to do without
# packages.
apt_install() {
    local who=$1
    shift
    (($#)) || return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "$who: missing $*; run as root: apt-get install -y $*" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "$who: installing $*" >&2
    # Through env, so the setting survives sudo's environment reset.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
