#!/usr/bin/env bash
# Kernel-side dependencies of the eBPF collector, for Debian hosts:
#   - BCC from Debian (bpfcc-tools python3-bpfcc); never `pip install bcc`
#     (that PyPI name is an unrelated library);
#   - apparmor + python3-seccomp (the audit report writer's profile tests), best effort;
#   - a kernel header tree BCC can compile against: Debian's linux-headers-<V>-common
#     and -amd64 merged into /var/cache/vigil/kernel-headers/<uname -r> (no header
#     package ships for this kernel; the -amd64 tree alone fails on kconfig.h);
#     the collector points BCC_KERNEL_SOURCE at that path itself;
#   - tracefs mounted at /sys/kernel/tracing;
#   - the Debian `bcc` package (only it) symlinked into the venv's site-packages.
# Idempotent: a second run checks and returns in seconds. Without root or off
# Linux it says what is missing and exits 0, so the rest of Vigil still installs.
# Usage: bash infra/host/install-kernel-deps.sh [VENV]
#        bash infra/host/install-kernel-deps.sh --headers
#   --headers: only the header tree, and only when the node has none of its own
#   (/lib/modules/<uname -r>/build, /sys/kernel/kheaders.tar.xz); exits 1 when it
#   cannot make one. The collector pod's init container runs this (infra/k8s).
set -u
headers_only=0
if [ "${1:-}" = --headers ]; then headers_only=1; shift; fi
venv=${1:-.venv}
cache=${VIGIL_KERNEL_HEADERS_CACHE:-/var/cache/vigil/kernel-headers}
tree="$cache/$(uname -r)"
say() { echo "kernel-deps: $*"; }

missing() {
  local m=()
  command -v dpkg >/dev/null 2>&1 && ! dpkg -s python3-bpfcc >/dev/null 2>&1 && m+=("python3-bpfcc (apt)")
  [ -d /usr/lib/python3/dist-packages/bcc ] || m+=("bcc python package")
  [ -f "$tree/include/linux/kconfig.h" ] || m+=("kernel header tree at $tree")
  mountpoint -q /sys/kernel/tracing 2>/dev/null || m+=("tracefs at /sys/kernel/tracing")
  printf '%s\n' "${m[@]+"${m[@]}"}"
}

node_headers() {  # what the collector uses before the cache (collector/headers.py)
  local r
  r=$(uname -r)
  if [ -d "/lib/modules/$r/build" ]; then echo "/lib/modules/$r/build"
  elif [ -f "/usr/src/linux-headers-$r/include/linux/kconfig.h" ]; then echo "/usr/src/linux-headers-$r"
  elif [ -f /sys/kernel/kheaders.tar.xz ]; then echo /sys/kernel/kheaders.tar.xz
  fi
}

if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
  say "skipped (needs root on Linux); the eBPF collector will be unavailable"
  if [ "$(uname -s)" = Linux ]; then
    missing | grep . | sed 's/^/kernel-deps:   missing: /'
  fi
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get (not Debian); install BCC and kernel headers by hand, see docs/collector.md"
  missing | grep . | sed 's/^/kernel-deps:   missing: /'
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
  [ "$apt_updated" = 1 ] && return 0
  say "apt-get update"
  apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
  apt_updated=1
}
has_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; }

install_pkgs() {  # install_pkgs required|optional pkg...
  local kind=$1; shift
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} = 0 ] && return 0
  for p in "${need[@]}"; do has_candidate "$p" || apt_update_once; done
  say "apt-get install ${need[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    say "could not install ${need[*]} ($kind)"
    [ "$kind" = required ] && return 1
  fi
  return 0
}

[ "$headers_only" = 1 ] || install_pkgs required bpfcc-tools python3-bpfcc
[ "$headers_only" = 1 ] || install_pkgs optional apparmor python3-seccomp

build_headers() {
  [ -f "$tree/include/linux/kconfig.h" ] && return 0
  has_candidate linux-headers-amd64 || apt_update_once
  local v
  v=$(apt-cache show linux-headers-amd64 2>/dev/null | sed -n 's/^Depends: linux-headers-\([^ ,]*\)-amd64.*/\1/p' | head -1)
  if [ -z "$v" ]; then say "cannot find Debian's linux-headers-amd64 version"; return 1; fi
  local work
  work=$(mktemp -d)
  say "building kernel header tree from linux-headers-$v-{common,amd64} into $tree"
  if ! (cd "$work" && apt-get download -qq "linux-headers-$v-common" "linux-headers-$v-amd64" >/dev/null); then
    say "apt-get download of linux-headers-$v failed"; rm -rf "$work"; return 1
  fi
  mkdir -p "$work/x"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
  local staged="$tree.tmp.$$"
  rm -rf "$staged"; mkdir -p "$staged/arch/x86"
  for src in "$work"/x/usr/src/linux-headers-"$v"-*; do
    [ -d "$src/include" ] && cp -a "$src/include" "$staged/" 2>/dev/null
    [ -d "$src/arch/x86/include" ] && cp -a "$src/arch/x86/include" "$staged/arch/x86/" 2>/dev/null
  done
  rm -rf "$staged/include/config"
  rm -rf "$work"
  if [ ! -f "$staged/include/linux/kconfig.h" ]; then say "merged tree lacks include/linux/kconfig.h"; rm -rf "$staged"; return 1; fi
  rm -rf "$tree"; mv "$staged" "$tree"
}
if [ "$headers_only" = 1 ]; then
  own=$(node_headers)
  if [ -n "$own" ]; then say "the node has its own headers: $own (nothing to build)"; exit 0; fi
  if build_headers; then say "ok (headers at $tree)"; exit 0; fi
  say "no kernel header tree for $(uname -r): the collector cannot compile its programs"
  exit 1
fi
build_headers || true

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || say "cannot mount tracefs"

if [ -d "$venv" ] && [ -d /usr/lib/python3/dist-packages/bcc ]; then
  for site in "$venv"/lib/python3*/site-packages; do
    [ -d "$site" ] || continue
    if [ ! -e "$site/bcc" ]; then ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc" && say "linked bcc into $site"; fi
  done
fi

left=$(missing)
if [ -n "$left" ]; then
  printf '%s\n' "$left" | sed 's/^/kernel-deps:   still missing: /'
else
  say "ok (BCC, headers at $tree, tracefs, bcc in $venv)"
fi
exit 0
