#!/usr/bin/env bash
# Builds the Vigil image (infra/docker/Dockerfile) with podman.
#
#   bash infra/docker/build.sh [IMAGE]        # default localhost/vigil:latest: what the
#                                             # manifests' `image: vigil` finds in podman
#   bash infra/docker/build.sh --push REF     # build as REF, then `podman push REF`
#                                             # (Tilt's custom_build passes $EXPECTED_REF)
#
# Base image: $VIGIL_BASE_IMAGE (default docker.io/library/debian:bookworm-slim) when
# podman has it or can pull it. With no registry reachable (or VIGIL_BASE_IMAGE=local),
# a Debian bookworm minbase is bootstrapped with debootstrap from this machine's Debian
# mirror (its apt sources; $VIGIL_DEBIAN_MIRROR overrides), slimmed like the -slim image
# and imported as localhost/vigil-base:bookworm-<recipe hash>, kept for the next build.
# pip inside the build gets this machine's CA bundle ($PIP_CERT, else the system bundle)
# as the build secret "pip-ca": only pip's RUN steps see it, the image holds none of it.
# The files the Dockerfile copies are staged and hashed: an image built from the same
# files on the same base is tagged localhost/vigil:src-<hash> and reused, not rebuilt.
# Prints the image reference last. Needs root for debootstrap (the local base only).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
say() { echo "build-image: $*" >&2; }
push=0
if [ "${1:-}" = --push ]; then push=1; shift; fi
image=${1:-localhost/vigil:latest}
base=${VIGIL_BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
command -v podman >/dev/null 2>&1 || { say "podman is not installed"; exit 1; }

debian_mirror() {  # the first Debian archive URI of this machine's apt sources
  if [ -n "${VIGIL_DEBIAN_MIRROR:-}" ]; then echo "$VIGIL_DEBIAN_MIRROR"; return; fi
  local found
  found=$( { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources
             awk '$1 == "deb" { print $2 }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
           } 2>/dev/null | tr ' ' '\n' | grep -E '/debian/?$' | head -1 || true)
  echo "${found:-http://deb.debian.org/debian}"
}

local_base() {  # bootstrap a bookworm minbase, slimmed as the -slim image is; print its reference
  local mirror key ref dir
  mirror=$(debian_mirror)
  key=$( { declare -f local_base; echo "$mirror"; } | sha256sum | cut -c1-12)
  ref=localhost/vigil-base:bookworm-$key
  if podman image exists "$ref"; then echo "$ref"; return; fi
  [ "$(id -u)" = 0 ] || { say "bootstrapping a base needs root (debootstrap)"; return 1; }
  command -v debootstrap >/dev/null 2>&1 || { say "debootstrap is not installed (apt-get install debootstrap)"; return 1; }
  dir=$(mktemp -d /var/tmp/vigil-base.XXXXXX)
  say "no $base: bootstrapping Debian bookworm (minbase) from $mirror"
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1; then
    tail -20 "$dir.log" >&2; rm -rf "$dir" "$dir.log"; return 1
  fi
  # As debian:bookworm-slim: no documentation, manuals or translations, now or later.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    'path-exclude /usr/share/lintian/*' >"$dir/etc/dpkg/dpkg.cfg.d/vigil-slim"
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$dir"/usr/share/{man,info,locale,lintian}/* "$dir"/var/cache/apt/*.bin \
    "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$dir/etc/apt/sources.list"
  tar -C "$dir" --numeric-owner -cf - . | podman import --quiet - "$ref" >/dev/null
  rm -rf "$dir" "$dir.log"
  echo "$ref"
}

if [ "$base" = local ] || ! { podman image exists "$base" || podman pull --quiet "$base" >/dev/null 2>&1; }; then
  base=$(local_base)
fi

# The build context: exactly what the Dockerfile copies (no venv, caches or data).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tar -C "$root" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md contracts services \
  collector bpf infra/docker/Dockerfile infra/host/install-kernel-deps.sh | tar -C "$stage" -xf -
key=$( { podman image inspect --format '{{.Id}}' "$base"
         tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .; } | sha256sum | cut -c1-12)
cached=localhost/vigil:src-$key

if podman image exists "$cached"; then
  say "$cached is up to date (same sources, same base)"
else
  secret=()
  ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  [ -f "$ca" ] && secret=(--secret "id=pip-ca,src=$ca")
  say "building $cached from $base"
  start=$(date +%s)
  podman build --layers --build-arg "BASE=$base" "${secret[@]}" -f "$stage/infra/docker/Dockerfile" \
    -t "$cached" "$stage" >&2
  say "built in $(( $(date +%s) - start )) s, $(podman image inspect --format '{{.Size}}' "$cached" | awk '{printf "%d MB", $1 / 1e6}')"
  # Earlier builds' cache tags go (an image still tagged otherwise stays).
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/vigil | grep ':src-' | grep -v ":src-$key\$" |
    while read -r old; do podman rmi "$old" >/dev/null 2>&1 || true; done || true
fi
podman tag "$cached" "$image"
if [ "$push" = 1 ]; then podman push --quiet "$image" >&2; fi
echo "$image"
