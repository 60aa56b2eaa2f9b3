#!/usr/bin/env bash
# Makes deploy/Dockerfile's default base images on a machine that reaches the
# package registries but no container registry (CI):
#   docker.io/library/debian:bookworm-slim  debootstrap --variant=minbase bookworm,
#                                           from the apt mirror this machine uses;
#   docker.io/library/rust:1-slim-bookworm  that, plus gcc and this machine's
#                                           Rust toolchain, laid out as the
#                                           official image lays it out.
# The CA certificates this machine adds to Debian's (/usr/local/share/
# ca-certificates, e.g. a TLS-intercepting egress proxy's) go into both, so
# that apt, pip and cargo inside a build reach the registries as they do
# here. An image that already exists (pulled, or made earlier) is left alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/podman-env.sh"

DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
SUITE=bookworm

# The first mirror apt is configured with for $SUITE (deb822 .sources, then
# one-line .list entries).
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
            { uri = ""; ok = 0
              for (i = 1; i <= NF; i++) {
                  if ($i ~ /^URIs:/) { split(substr($i, 6), u, " "); uri = u[1] }
                  if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, " "); for (j = 1; j <= n; j++) if (s[j] == suite) ok = 1 }
              }
              if (ok && uri != "") print uri }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -e 's/\[[^]]*\]//' |
        awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }' || true
}

if ! podman image exists "$DEBIAN_IMAGE"; then
    mirror=$(apt_mirror | head -n 1)
    [ -n "$mirror" ] || { echo "no apt source for $SUITE found in /etc/apt" >&2; exit 1; }
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "base-images: debootstrap $SUITE from $mirror" >&2
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >&2
    # Apt inside builds uses the same mirror; trim what a slim image drops,
    # and clean apt's package cache after every install as the official
    # image's /etc/apt/apt.conf.d/docker-clean does (else each
    # `apt-get install` layer keeps its .deb files).
    echo "deb $mirror $SUITE main" > "$rootfs/etc/apt/sources.list"
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
CONF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    tar -C "$rootfs" -c . | podman import \
        --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

if ! podman image exists "$RUST_IMAGE"; then
    sysroot=$(rustc --print sysroot)
    rustup_bin=$(command -v rustup)
    echo "base-images: $RUST_IMAGE from $DEBIAN_IMAGE + $(rustc --version)" >&2
    podman build --pull=never -t "$RUST_IMAGE" \
        --build-arg "TOOLCHAIN=$(basename "$sysroot")" \
        -v "$sysroot:/host-toolchain:ro" -v "$rustup_bin:/host-rustup:ro" \
        -f "$here/rust-base.Containerfile" "$here" >&2
fi
