"""Loading bpf/collector.c with BCC and draining what it produces.

Invariants:
- parameters reach the C program only as ``-D`` cflags (:func:`cflags`);
- the C source travels with the installed package (``bpf/`` is package data,
  pyproject.toml), so it is found beside ``collector/`` in a wheel as in the tree;
- BCC compiles against the first kernel header tree :mod:`collector.headers`
  finds (``BCC_KERNEL_SOURCE`` is set here from it unless the operator set it);
- the ring buffer is drained by :meth:`Probe.consume` on the caller's timer
  (the kernel side submits with BPF_RB_NO_WAKEUP, so polling alone would never
  return); the callback only copies bytes, decoding happens in batches;
- the syscall bitmap map is drained (read, then deleted) by
  :meth:`Probe.drain_syscalls`, and what the kernel side lost per cgroup by
  :meth:`Probe.drain_lost`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector import abi, headers

ROOT = Path(__file__).resolve().parent.parent  # the source tree, or site-packages
BPF_SOURCE = ROOT / "bpf" / "collector.c"
BPF_INCLUDE = ROOT / "bpf" / "include"
RING_BYTES = 16 << 20

log = logging.getLogger("vigil.collector")


def missing() -> list[str]:
    """What the eBPF source needs and this machine lacks (empty: ready)."""
    out: list[str] = []
    if platform.system() != "Linux":
        return ["Linux (the eBPF collector runs only on Linux)"]
    if os.geteuid() != 0:
        out.append("root (the eBPF collector loads BPF programs)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        out.append("BCC in this Python (as root: bash infra/host/install-kernel-deps.sh .venv)")
    if not BPF_SOURCE.is_file():
        out.append(f"the BPF source {BPF_SOURCE} (bpf/ is missing from this installation)")
    found = headers.find()
    if found.path is None:
        out.append(found.describe().replace("no kernel header tree", "a kernel header tree", 1))
    if not Path("/sys/kernel/tracing/events").exists():
        out.append("tracefs at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing)")
    return out


@dataclass(frozen=True)
class ProbeOptions:
    dedup: bool = True
    dedup_size: int = 65_536
    ring_bytes: int = RING_BYTES
    exec: bool = True
    open: bool = True
    connect: bool = True
    dns: bool = True
    syscalls: bool = True
    syscall_map_size: int = 16_384  # (cgroup, pid) bitmaps held between two drains
    self_pid: int = 0  # 0: this process


def cflags(opts: ProbeOptions) -> list[str]:
    pages = max(1, opts.ring_bytes // os.sysconf("SC_PAGE_SIZE"))
    return [
        f"-I{BPF_INCLUDE}",
        f"-DSELF_PID={opts.self_pid or os.getpid()}",
        f"-DRINGBUF_PAGES={pages}",
        f"-DDEDUP_SIZE={opts.dedup_size}",
        f"-DDEDUP={int(opts.dedup)}",
        f"-DTRACE_EXEC={int(opts.exec)}",
        f"-DTRACE_OPEN={int(opts.open)}",
        f"-DTRACE_CONNECT={int(opts.connect)}",
        f"-DTRACE_DNS={int(opts.dns)}",
        f"-DTRACE_SYSCALLS={int(opts.syscalls)}",
        f"-DSYSCALL_MAP_SIZE={opts.syscall_map_size}",
        "-Wno-unused-variable",
    ]


def _prepare_environment() -> headers.Headers:
    found = headers.find(extract=True)
    os.environ.update(headers.environment(found))
    if not os.path.ismount("/sys/kernel/tracing") and shutil.which("mount"):
        os.system("mount -t tracefs nodev /sys/kernel/tracing >/dev/null 2>&1")  # noqa: S605 - fixed command
    return found


def set_bits(words: Any) -> list[int]:
    """The numbers of the set bits of a bitmap of 64-bit words (ascending)."""
    out = []
    for w, value in enumerate(words):
        while value:
            low = value & -value
            out.append(w * 64 + low.bit_length() - 1)
            value ^= low
    return out


class Probe:
    """The loaded BPF programs: a ring buffer of records, counters, the dedup
    map and the syscall bitmaps."""

    def __init__(self, opts: ProbeOptions = ProbeOptions(), source: Path = BPF_SOURCE) -> None:
        """``source``: another version of bpf/collector.c (bench comparisons only)."""
        found = _prepare_environment()
        log.info("%s", found.describe())
        from bcc import BPF

        self.opts = opts
        self.bpf = BPF(src_file=str(source).encode(), cflags=cflags(opts))
        self._pending: list[bytes] = []
        self._final: dict[str, int] | None = None
        self.bpf[b"events"].open_ring_buffer(self._on_record)

    def _on_record(self, _ctx: Any, data: int, size: int) -> int:
        self._pending.append(ctypes.string_at(data, size))
        return 0

    def consume(self) -> list[bytes]:
        """Every record the kernel submitted so far (non-blocking)."""
        self.bpf.ring_buffer_consume()
        out, self._pending = self._pending, []
        return out

    def counters(self) -> dict[str, int]:
        if self._final is not None:
            return dict(self._final)
        table = self.bpf[b"counters"]
        return {name: int(sum(table[ctypes.c_int(i)])) for i, name in enumerate(abi.COUNTER_NAMES)}

    def flush_dedup(self) -> None:
        """Forget every reported key: the next occurrence of each is reported again."""
        if self.opts.dedup:
            self.bpf[b"dedup"].clear()

    def flush_dedup_where(self, select: Callable[[list[Any]], list[Any]]) -> tuple[int, bool]:
        """Delete the dedup entries ``select`` picks from the current keys
        (each has ``cgroup_id`` and ``hash``). Returns (entries deleted, whole
        map cleared): when the keys cannot be listed or an entry cannot be
        deleted (other than being gone already), the whole map is cleared."""
        if not self.opts.dedup:
            return 0, False
        table = self.bpf[b"dedup"]
        try:
            doomed = select(list(table.keys()))
            deleted = 0
            for key in doomed:
                try:
                    del table[key]
                    deleted += 1
                except KeyError:
                    pass  # evicted meanwhile: already forgotten
            return deleted, False
        except Exception:  # noqa: BLE001 - a targeted delete failed: forget everything
            self.flush_dedup()
            return 0, True

    def drain_syscalls(self) -> Iterator[tuple[int, int, list[int]]]:
        """(cgroup id, pid, syscall numbers) per process since the last drain: one
        lookup-and-delete batch for the whole map (per key on kernels without it)."""
        table = self.bpf[b"syscalls"]
        try:
            items = list(table.items_lookup_and_delete_batch())
        except Exception:  # noqa: BLE001 - batch ops need kernel 5.6: key by key
            items = list(self._drain_key_by_key(table))
        for key, bits in items:
            yield key.cgroup_id, key.pid, set_bits(bits.w)

    @staticmethod
    def _drain_key_by_key(table: Any) -> Iterator[tuple[Any, Any]]:
        for key in list(table.keys()):
            try:
                bits = table[key]
                del table[key]
            except KeyError:
                continue
            yield key, bits

    def drain_lost(self) -> Iterator[tuple[int, int, int]]:
        """(cgroup id, records dropped, syscalls not recorded) per cgroup since the last drain."""
        table = self.bpf[b"lost"]
        for key in list(table.keys()):
            try:
                value = table[key]
                if not (value.records or value.syscalls):
                    continue  # just created: its first count is on its way
                del table[key]  # counts added between the read and here are lost; the loss itself is not
            except KeyError:
                continue
            yield int(key.value), int(value.records), int(value.syscalls)

    def close(self) -> None:
        if self._final is None:
            self._final = self.counters()
            self.bpf.cleanup()
