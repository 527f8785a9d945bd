"""audit-report-writer adapter: one app, one handler object per consumer.

Audit-run files (DECISIONS) are handled by :class:`audit_runs.AuditRuns`;
modelling windows (MODELS requests + EVENTS) by
:class:`model_files.ModelWindowsHandler`, which writes its files before it
returns the ``Completed`` status. Other consumers sit beside them, dispatched
by the input's stream. The runner calls ``commit`` before it acks, so every
handler makes its output durable there.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.subjects import DECISIONS
from services.audit_report_writer import audit_runs
from services.audit_report_writer.model_files import MODEL_CONSUMERS, ModelWindowsHandler
from services.runtime.bus import Bus
from services.runtime.service import AppBase, Incoming, Outgoing
from services.runtime.settings import Settings


class AuditReportWriter(AppBase):
    name = "audit-report-writer"
    consumers = (audit_runs.CONSUMER, *MODEL_CONSUMERS)
    stateful_streams = frozenset({DECISIONS})  # audit runs are order-sensitive: resume at their saved position
    # It reads every EventBatch (only its max-time header while no modelling window is
    # open): pulling one batch at a time as they trickle in cost more than the reading.
    # Up to 50 ms more per pull makes a few fetches a second of all partitions' batches.
    fetch_linger = 0.05
    queue_fetch = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.audit_runs = audit_runs.AuditRuns(settings, self.counters, self.positions)
        self.models = ModelWindowsHandler(settings.data_path, partitions=settings.nats.partitions)

    async def start(self, bus: Bus) -> None:
        self.audit_runs.load()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        if msg.stream == DECISIONS:
            return self.audit_runs.handle(msg)
        if msg.stream in self.models.streams:
            return self.models.handle(msg)
        return ()

    async def commit(self) -> None:
        self.audit_runs.commit()
        self.models.commit()


def build(settings: Settings) -> AuditReportWriter:
    return AuditReportWriter(settings)
