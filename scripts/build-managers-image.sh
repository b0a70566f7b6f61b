#!/usr/bin/env bash
# Build the "managers" variant of the test image: the node image (scripts/build-image.sh)
# plus Debian's docker.io, ufw and firewalld, for gateways that other firewall managers share.
#
#   scripts/build-managers-image.sh              build localhost/ipmasq-managers:<tag> unless it exists
#   scripts/build-managers-image.sh --print-ref  print that reference and exit (no podman needed)
#
# <tag> is the first 12 hex digits of a sha256 over the node image's reference (itself a hash
# of its recipe) and the files of this variant, so either recipe changing yields a new image
# while re-runs reuse the cached one. The packages are installed at build time, with apt in a
# chroot of the node image's root file system: no container ever runs on a network here.
#
# In the image every manager is installed but off (docker, containerd and firewalld are not
# enabled, ufw is not enabled); a scenario switches on the one a gateway shares. Docker runs
# there on these hosts' cgroup v1 only with a cgroup2 mount of its own: images/managers/
# holds the drop-ins that give dockerd and containerd one (see their comments), and a
# busybox root file system for `docker import`, as no registry is reachable.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image_name=localhost/ipmasq-managers
packages=(docker.io busybox-static ufw firewalld)

log() { printf '%s build-managers-image: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

base_ref=$("$repo_root/scripts/build-image.sh" --print-ref)

image_tag() {
    local files
    mapfile -t files < <(cd "$repo_root" && { echo scripts/build-managers-image.sh;
                                            find images/managers -type f | LC_ALL=C sort; })
    { echo "base $base_ref"; cd "$repo_root" && sha256sum "${files[@]}"; } | sha256sum | cut -c1-12
}

ref="$image_name:$(image_tag)"
if [[ "${1:-}" == "--print-ref" ]]; then
    echo "$ref"
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--print-ref]" >&2
    exit 2
fi

[[ $EUID -eq 0 ]] || { echo "build-managers-image: must run as root (chroot, rootful podman)" >&2; exit 1; }

mkdir -p "$repo_root/.build"
exec 9>"$repo_root/.build/image-managers.lock"
flock -w 900 9 || { log "timed out waiting for another image build"; exit 1; }

if podman image exists "$ref"; then
    log "$ref is up to date"
    exit 0
fi
podman image exists "$base_ref" || "$repo_root/scripts/build-image.sh"

start=$SECONDS
rootfs=$(mktemp -d -p "${TMPDIR:-/var/tmp}" ipmasq-managers.XXXXXX)
container=""
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    [[ -z "$container" ]] || podman rm --force "$container" >/dev/null 2>&1 || true
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

log "unpacking $base_ref"
container=$(podman create --network=none "$base_ref" /bin/true)
podman export "$container" | tar -C "$rootfs" -x
podman rm "$container" >/dev/null
container=""

log "apt-get install ${packages[*]} in a chroot (a few minutes)"
for fs in proc sys dev; do
    mount --rbind "/$fs" "$rootfs/$fs"
    mount --make-rslave "$rootfs/$fs"
    mounted=("$rootfs/$fs" "${mounted[@]}")
done
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
# No service starts while packages install (it would start in the host's namespaces).
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
build_log="$repo_root/.build/build-managers-image.log"
if ! chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]}" \
        > "$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    log "failed, full log: $build_log"
    exit 1
fi
for m in "${mounted[@]}"; do umount -l "$m"; done
mounted=()
rm -f "$rootfs/usr/sbin/policy-rc.d"
: > "$rootfs/etc/resolv.conf"

log "switching the managers off, adding the docker drop-ins and the busybox root"
# Installed, not running: each scenario switches on the manager a gateway shares.
for unit in docker.service docker.socket containerd.service firewalld.service ufw.service; do
    rm -f "$rootfs"/etc/systemd/system/*.wants/"$unit"
done
cp -r "$repo_root/images/managers/etc/." "$rootfs/etc/"
mkdir -p "$rootfs/usr/local/share/ipmasq"
busybox_root=$(mktemp -d -p "${TMPDIR:-/var/tmp}" ipmasq-busybox.XXXXXX)
mkdir -p "$busybox_root/bin" "$busybox_root/www"
cp "$rootfs/bin/busybox" "$busybox_root/bin/busybox"
for applet in sh httpd echo cat sleep; do ln -s busybox "$busybox_root/bin/$applet"; done
tar -C "$busybox_root" --numeric-owner -cf "$rootfs/usr/local/share/ipmasq/busybox-root.tar" .
rm -rf "$busybox_root"
# The packages may bring vendor sysctl files: masked, as in the node image.
for conf in "$rootfs"/usr/lib/sysctl.d/*.conf; do
    if [[ -e "$conf" ]]; then
        ln -sf /dev/null "$rootfs/etc/sysctl.d/$(basename "$conf")"
    fi
done
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

log "importing $ref"
tar -C "$rootfs" --numeric-owner -c . \
    | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'LABEL org.ipmasq.image=managers' - "$ref" >/dev/null

for old in $(podman images --filter "reference=$image_name" --format '{{.Repository}}:{{.Tag}}'); do
    if [[ "$old" != "$ref" ]] && podman rmi "$old" >/dev/null 2>&1; then
        log "removed old image $old"
    fi
done
log "built $ref in $((SECONDS - start))s"
