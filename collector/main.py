"""Collector entry point: pick a source, batch, publish, tick.

Sources: ``ebpf`` (needs root and BCC), ``trace:FILE`` (JSONL) and
``synthetic`` (load generator). ``auto`` means ebpf when available.
"""

from __future__ import annotations

import os

from services.runtime.settings import Settings


def collector_available(settings: Settings) -> tuple[bool, str]:
    """Whether `vigil up` should start the collector, and why not."""
    source = settings.collector.source
    if source != "auto" and source != "ebpf":
        return True, source
    if os.geteuid() != 0:
        return False, "the eBPF collector needs root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return False, "BCC is not installed (make install-kernel-deps as root)"
    return True, "ebpf"


async def run_collector(settings: Settings) -> None:
    raise SystemExit("the collector's live sources land with the collector issue; use `vigil collect --from TRACE`")
