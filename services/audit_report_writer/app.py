"""audit-report-writer adapter: one app, one handler object per consumer.

Audit-run files (DECISIONS) are handled by :class:`audit_runs.AuditRuns`; other
consumers sit beside it, dispatched by the input's stream. The runner calls
``commit`` before it acks, so every handler makes its output durable there.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.subjects import DECISIONS
from services.audit_report_writer import audit_runs
from services.runtime.bus import Bus
from services.runtime.service import AppBase, Incoming, Outgoing
from services.runtime.settings import Settings


class AuditReportWriter(AppBase):
    name = "audit-report-writer"
    consumers = (audit_runs.CONSUMER,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.audit_runs = audit_runs.AuditRuns(settings, self.counters)

    async def start(self, bus: Bus) -> None:
        self.audit_runs.load()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        if msg.stream == DECISIONS:
            return self.audit_runs.handle(msg)
        return ()

    async def commit(self) -> None:
        self.audit_runs.commit()


def build(settings: Settings) -> AuditReportWriter:
    return AuditReportWriter(settings)
