#!/usr/bin/env bash
# Build the Debian systemd image that Molecule scenarios and the lab run, for one release.
#
#   scripts/build-image.sh [--release R]              build localhost/ipmasq-node:<R>-<hash> unless it exists
#   scripts/build-image.sh [--release R] --print-ref  print that reference and exit (no podman needed)
#
# R is a Debian release from RELEASES below: bookworm (Debian 12, the default) or trixie
# (Debian 13); IPMASQ_RELEASE sets it too. Every release gets the same recipe.
# <hash> is the first 12 hex digits of a sha256 over the release name, this script, the traffic
# tools and anything under images/ipmasq-node/, so changing the recipe yields a new image while
# re-runs reuse the cached one. No registry is needed: the root file system comes from
# debootstrap and a Debian mirror (IPMASQ_DEBIAN_MIRROR, else the host's apt sources,
# else deb.debian.org). Needs root, debootstrap and podman.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image_name=localhost/ipmasq-node
RELEASES=(bookworm trixie)
suite=${IPMASQ_RELEASE:-bookworm}
print_ref=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --release) [[ $# -ge 2 ]] || { echo "build-image: --release needs a value" >&2; exit 2; }
                   suite=$2; shift 2 ;;
        --release=*) suite=${1#--release=}; shift ;;
        --print-ref) print_ref=true; shift ;;
        *) echo "usage: $0 [--release $(IFS="|"; echo "${RELEASES[*]}")] [--print-ref]" >&2; exit 2 ;;
    esac
done
[[ " ${RELEASES[*]} " == *" $suite "* ]] \
    || { echo "build-image: unknown release '$suite' (known: ${RELEASES[*]})" >&2; exit 2; }
# The ansible-core lines that run their tests in the trixie image (tests/matrix/core-line.sh)
# need the shellcheck package for ansible-test's sanity test of that name.
packages=python3,iproute2,iptables,ipset,nftables,procps,curl,conntrack,systemd,systemd-sysv,dbus,openssh-server,iputils-ping,ca-certificates,shellcheck
recipe_files=(
    scripts/build-image.sh
    tests/tools/ipmasq_echo.py
    tests/tools/ipmasq_probe.py
)

log() { printf '%s build-image: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

image_tag() {
    local extra=()
    if [[ -d "$repo_root/images/ipmasq-node" ]]; then
        mapfile -t extra < <(cd "$repo_root" && find images/ipmasq-node -type f | LC_ALL=C sort)
    fi
    # The package list lives in this script, so hashing it covers it; the release is hashed too.
    { echo "release $suite"; cd "$repo_root" && sha256sum "${recipe_files[@]}" "${extra[@]}"; } \
        | sha256sum | cut -c1-12
}

# The mirror of the host's apt sources (deb822 or one-line style) that serves the release,
# else one that serves another known Debian release: a Debian mirror serves them all.
debian_mirror() {
    if [[ -n "${IPMASQ_DEBIAN_MIRROR:-}" ]]; then
        echo "$IPMASQ_DEBIAN_MIRROR"
        return
    fi
    local candidate
    for candidate in "$suite" "${RELEASES[@]}"; do
        mirror_for "$candidate" && return
    done
    echo http://deb.debian.org/debian
}

# mirror_for SUITE: print the first apt source URI for SUITE; fail when there is none.
mirror_for() {
    local suite=$1 f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        # Stanzas are separated by blank lines; want Types: deb and the plain suite.
        uri=$(awk -v suite="$suite" '
            function flush() { if (deb && has_suite && uris != "") { split(uris, u, " "); print u[1]; found = 1; exit } deb = has_suite = 0; uris = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            tolower($1) == "uris:" { uris = ""; for (i = 2; i <= NF; i++) uris = uris " " $i }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
            END { if (!found) flush() }' "$f")
        if [[ -n "$uri" ]]; then
            echo "$uri"
            return
        fi
    done
    if [[ -f /etc/apt/sources.list ]]; then
        uri=$(awk -v suite="$suite" '
            $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)
        if [[ -n "$uri" ]]; then
            echo "$uri"
            return
        fi
    fi
    return 1
}

ref="$image_name:$suite-$(image_tag)"
if $print_ref; then
    echo "$ref"
    exit 0
fi

[[ $EUID -eq 0 ]] || { echo "build-image: must run as root (debootstrap, rootful podman)" >&2; exit 1; }

# One build at a time; a second caller waits and then finds the image.
mkdir -p "$repo_root/.build"
exec 9>"$repo_root/.build/image-$suite.lock"
flock -w 900 9 || { log "timed out waiting for another image build"; exit 1; }

if podman image exists "$ref"; then
    log "$ref is up to date"
    exit 0
fi

mirror=$(debian_mirror)
rootfs=$(mktemp -d -p "${TMPDIR:-/var/tmp}" ipmasq-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT

log "debootstrap $suite from $mirror into $rootfs (about a minute)"
start=$SECONDS
build_log="$repo_root/.build/build-image-$suite.log"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    > "$build_log" 2>&1 || { tail -n 30 "$build_log" >&2; log "failed, full log: $build_log"; exit 1; }
log "debootstrap done in $((SECONDS - start))s"

log "installing traffic tools and container tweaks"
# Pin the interpreter: the image has python3 but no `python`, whatever the sources' shebang says.
for tool in echo probe; do
    sed '1s|^#!.*python.*$|#!/usr/bin/python3|' "$repo_root/tests/tools/ipmasq_$tool.py" > "$rootfs/usr/local/bin/ipmasq-$tool"
    chmod 0755 "$rootfs/usr/local/bin/ipmasq-$tool"
done
# Each container must get its own machine id, generated at first boot.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# Consoles and udev-driven units have nothing to do in a container and only slow boot down.
# Module loading and binfmt registration would act on the host kernel from a privileged container.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-modules-load.service \
            systemd-binfmt.service proc-sys-fs-binfmt_misc.automount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Privileged containers can write kernel-wide sysctls (kernel.*, fs.*): mask the vendor
# defaults so boot applies only what the roles persist (per-namespace net.* keys).
for conf in "$rootfs"/usr/lib/sysctl.d/*.conf; do
    if [[ -e "$conf" ]]; then
        ln -sf /dev/null "$rootfs/etc/sysctl.d/$(basename "$conf")"
    fi
done
# Host keys are per image, which is fine for throwaway test containers.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

log "importing $ref"
tar -C "$rootfs" --numeric-owner -c . \
    | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'LABEL org.ipmasq.image=node' - "$ref" >/dev/null

# Drop this release's images of older recipes; ones still used by containers stay.
for old in $(podman images --filter "reference=$image_name:$suite-*" --format '{{.Repository}}:{{.Tag}}'); do
    if [[ "$old" != "$ref" ]] && podman rmi "$old" >/dev/null 2>&1; then
        log "removed old image $old"
    fi
done
log "built $ref in $((SECONDS - start))s"
