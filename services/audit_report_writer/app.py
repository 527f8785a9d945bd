"""audit-report-writer adapter: reads decisions (walking skeleton)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.codec import ContractError, decode_json
from contracts.subjects import DECISIONS, ConsumerSpec
from services.audit_report_writer import core
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings


class AuditReportWriter(AppBase):
    name = "audit-report-writer"
    consumers = (ConsumerSpec(DECISIONS, "audit-report-writer"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state = core.State()

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            decision = decode_json("decision", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        self.state = core.evolve(self.state, decision)
        return ()


def build(settings: Settings) -> AuditReportWriter:
    return AuditReportWriter(settings)
