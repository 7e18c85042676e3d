#!/usr/bin/env bash
# Builds the small OCI image layout that shoal-oci's tests run: busybox-static as /bin/sh and its
# applets, an /etc/passwd naming the sandbox user. Usage: scripts/build-test-image.sh OUTDIR
#
# The layout is written by hand (tar, gzip, sha256sum) rather than with umoci so that it is
# byte-for-byte deterministic: sorted entries, mtimes at the epoch, numeric root ownership, gzip
# without a name or timestamp, no creation dates in the config. The same busybox gives the same
# digests, so the image keeps its CID. OUTDIR is replaced.
set -euo pipefail

out=${1:?usage: $0 OUTDIR}
busybox=/bin/busybox
if [[ ! -x "$busybox" ]]; then
    echo "build-test-image: $busybox missing; run scripts/install-deps.sh (package busybox-static)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,outputs,proc,sys,dev}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 0755 "$root" "$root"/{bin,etc,outputs,proc,sys,dev}
chmod 1777 "$root/tmp"
chmod 0644 "$root"/etc/{passwd,group}

mkdir -p "$work/layout/blobs/sha256"
blobs=$work/layout/blobs/sha256
# Writes stdin as a blob; prints its digest (hex) and size.
put_blob() {
    local tmp=$work/blob hex
    cat >"$tmp"
    hex=$(sha256sum "$tmp" | cut -d' ' -f1)
    mv "$tmp" "$blobs/$hex"
    echo "$hex $(stat -c %s "$blobs/$hex")"
}

tar --create --directory="$root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime . >"$work/layer.tar"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
read -r layer_hex layer_size < <(gzip -n -9 <"$work/layer.tar" | put_blob)

read -r config_hex config_size < <(printf '%s' \
    '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]}}' |
    put_blob)

read -r manifest_hex manifest_size < <(printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_hex"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_hex"'","size":'"$layer_size"'}]}' |
    put_blob)

printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_hex"'","size":'"$manifest_size"',"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    >"$work/layout/index.json"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$work/layout" "$out"
echo "build-test-image: $out (manifest sha256:$manifest_hex)" >&2
