#!/bin/sh
# Makes the base images docker/Dockerfile builds FROM (debian:12 and debian:12-slim) when no
# container registry is reachable: debootstrap Debian 12 (bookworm) from the Debian mirror in
# this machine's apt sources, then import the tree with `podman import` (or `docker import`).
#
#   docker/base-image.sh            make both images unless they exist (a cached no-op)
#   FORCE=1 docker/base-image.sh    make them again
#
# Environment: ENGINE (podman, else docker), MIRROR (default: the first Debian mirror in
# /etc/apt/sources.list and /etc/apt/sources.list.d, else http://deb.debian.org/debian),
# BASE (default localhost/debian:12), SLIM (default localhost/debian:12-slim). Needs root and
# debootstrap (apt-get install debootstrap).
set -eu

ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
BASE=${BASE:-localhost/debian:12}
SLIM=${SLIM:-localhost/debian:12-slim}
SUITE=bookworm

exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

if [ "${FORCE:-0}" != 1 ] && exists "$BASE" && exists "$SLIM"; then
    echo "base-image: $BASE and $SLIM exist (FORCE=1 remakes them)"
    exit 0
fi

# The first Debian archive (not the security one) named by apt's sources, one-line or deb822.
mirror_from_apt() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '/^[ \t]*#/ { next }
             /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }
             /^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f"
    done | grep -v -e security -e '^$' | grep -E '/debian/?$' | head -n 1
}
MIRROR=${MIRROR:-$(mirror_from_apt)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null 2>&1 || {
    echo "base-image: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/tensord-base.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/root"

echo "base-image: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

# As the official images: the updates and security suites in apt's sources, no caches, and the
# container engine's own resolv.conf and hostname.
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
if [ "$MIRROR" != http://deb.debian.org/debian ]; then
    # A private mirror may not carry the security archive; keep what the machine itself uses.
    sec=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -o 'https\?://[^ ]*debian-security[^ ]*' | head -n 1)
    [ -n "$sec" ] && sed -i "s|http://deb.debian.org/debian-security|$sec|" \
        "$root/etc/apt/sources.list"
fi
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/cache/apt/"*.bin "$root/var/lib/apt/lists/"* \
       "$root/var/log/"*.log "$root/etc/resolv.conf" "$root/etc/hostname"
# Downloaded packages are deleted after each install, as in Debian's official images.
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
: > "$root/etc/resolv.conf"

import() {   # import <tag>: the tree as a one-layer image that runs bash by default
    tar -C "$root" --numeric-owner -cf - . \
        | "$ENGINE" import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$1" \
            > "$work/import.log" 2>&1 || { cat "$work/import.log" >&2; exit 1; }
    echo "base-image: made $1"
}
import "$BASE"

# The slim variant, as debian:12-slim: no documentation, manual pages or translations, now or
# from later installs.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" "$root/usr/share/groff" \
     "$root/usr/share/lintian" -mindepth 1 -delete 2>/dev/null || true
import "$SLIM"
