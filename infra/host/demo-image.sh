#!/usr/bin/env bash
# A container image made locally, with no registry: a root file system holding
# Debian's static busybox (sh, cat, ls, wget, httpd, ...), imported into a
# container runtime. Used by the README's first run, the kernel tests and
# bench.collector.
#
# Usage:
#   bash infra/host/demo-image.sh podman|docker REF     # import as REF (e.g. localhost/vigil-demo:1.0)
#   bash infra/host/demo-image.sh rootfs DIR            # only the root file system (containerd's `ctr run --rootfs`)
# Needs root to install busybox-static when /bin/busybox is not static.
set -euo pipefail
target=${1:?usage: demo-image.sh podman|docker|rootfs REF|DIR}
ref=${2:?usage: demo-image.sh podman|docker|rootfs REF|DIR}

busybox=/bin/busybox
is_static() { [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1; }
if ! is_static "$busybox"; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
  fi
  is_static "$busybox" || { echo "demo-image: needs a static /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }
fi

build_rootfs() {  # build_rootfs DIR
  local root=$1
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/www"
  cp "$busybox" "$root/bin/busybox"
  for applet in sh cat ls sleep httpd wget echo true false id head seq touch rm mkdir env; do
    ln -sf busybox "$root/bin/$applet"
  done
  echo demo > "$root/etc/hostname"
  echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
  for i in $(seq 1 16); do head -c 4096 /dev/zero > "$root/www/file$i.bin"; done
  echo '<h1>vigil demo</h1>' > "$root/www/index.html"
}

case "$target" in
  rootfs)
    build_rootfs "$ref"
    echo "$ref"
    ;;
  podman|docker)
    command -v "$target" >/dev/null 2>&1 || { echo "demo-image: $target is not installed" >&2; exit 1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    build_rootfs "$work/root"
    tar -C "$work/root" -cf "$work/image.tar" .
    if [ "$target" = podman ]; then podman import --quiet "$work/image.tar" "$ref" >/dev/null; else docker import "$work/image.tar" "$ref" >/dev/null; fi
    echo "$ref"
    ;;
  *)
    echo "demo-image: unknown target $target (podman, docker or rootfs)" >&2
    exit 2
    ;;
esac
