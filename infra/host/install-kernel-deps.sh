#!/usr/bin/env bash
# Kernel-side dependencies of the eBPF collector (BCC, a kernel header tree,
# tracefs, `bcc` visible in the venv). Best effort: without root or off Linux it
# says what is missing and exits 0, so the rest of Vigil still installs and runs.
set -u
venv=${1:-.venv}
if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
  echo "kernel-deps: skipped (needs root on Linux); the eBPF collector will be unavailable"
  exit 0
fi
echo "kernel-deps: the collector's installer lands with the collector issue"
