#!/usr/bin/env bash
# Container runtimes for the kernel tests (tests/kernel/test_runtime_identity.py):
# podman + runc, docker.io (dockerd; it brings containerd and ctr) and a static
# busybox for the locally built images (infra/host/demo-image.sh); for the image
# and the played manifests (tests/kernel/test_kube_play.py) debootstrap (the base
# image, infra/docker/build.sh) and catatonit (the pause process of podman's
# pods). Debian packages, installed only where missing. `make test` runs this (CI machines
# start bare); `make up` never does: Vigil uses whichever runtimes a host has.
# Without root or apt it says what is missing and exits 0 (the tests then fail
# with that reason as root, or skip as a user).
set -u
say() { echo "test-runtimes: $*"; }
pkgs="podman runc docker.io containerd busybox-static debootstrap catatonit"

if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "skipped (needs root and apt-get)"
  exit 0
fi
need=()
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} = 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
for p in "${need[@]}"; do
  if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
    break
  fi
done
say "apt-get install ${need[*]}"
# Package scripts may try to start the daemons; the tests start their own, so a
# failure to start one here (no systemd) is not an install failure.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || say "could not install ${need[*]}"
exit 0
