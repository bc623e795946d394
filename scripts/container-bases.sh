#!/usr/bin/env bash
# Builds the two base images deploy/Containerfile needs from Debian's packages alone (no registry image): a build
# base with nodejs + npm (npm ci fetches the pinned Node 24 itself) and a minbase run base. mmdebstrap makes each
# root filesystem, podman imports it. Idempotent: an image already present (same recipe tag) is kept.
#   scripts/container-bases.sh            → localhost/prfleet-build-base:<recipe> and localhost/prfleet-run-base:<recipe>
# Prints "BUILD_BASE=… RUN_BASE=…". The site's extra CA certificates (/usr/local/share/ca-certificates, e.g. a
# TLS-inspecting proxy in front of the npm registry) are copied into the build base so npm ci trusts them.
set -euo pipefail
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RECIPE=$(printf '%s\n' "$SUITE" "v1" "$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum)" | sha256sum | cut -c1-12)
BUILD_BASE=localhost/prfleet-build-base:$RECIPE
RUN_BASE=localhost/prfleet-run-base:$RECIPE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_base() { # image, mmdebstrap args…
  local image=$1; shift
  if podman image exists "$image"; then return; fi
  mmdebstrap --quiet --variant=minbase "$@" "$SUITE" "$work/rootfs.tar" "$MIRROR"
  podman import --quiet "$work/rootfs.tar" "$image" >/dev/null
  rm -f "$work/rootfs.tar"
}

ca_hooks=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  ca_hooks=(--customize-hook="copy-in $(echo /usr/local/share/ca-certificates/*.crt) /usr/local/share/ca-certificates/"
    --customize-hook='chroot "$1" update-ca-certificates')
fi
build_base "$BUILD_BASE" --include=ca-certificates,nodejs,npm "${ca_hooks[@]}"
build_base "$RUN_BASE"
echo "BUILD_BASE=$BUILD_BASE RUN_BASE=$RUN_BASE"
