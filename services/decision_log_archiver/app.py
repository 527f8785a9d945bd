"""decision-log-archiver adapter: the single writer of the DuckDB archive.

Rows are staged while a fetched batch is handled and written in ``commit``,
in one transaction together with the stream position; the runner acks only
after that. Upserts on the decision id make a redelivered decision a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from contracts.codec import ContractError, decode_json
from contracts.decisions import Decision
from contracts.subjects import DECISIONS, ConsumerSpec
from services.decision_log_archiver import core
from services.runtime.bus import Bus, data_path
from services.runtime.service import AppBase, Incoming, Invalid, Outgoing
from services.runtime.settings import Settings


class Archiver(AppBase):
    name = "decision-log-archiver"
    consumers = (ConsumerSpec(DECISIONS, "decision-log-archiver"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.path = data_path(settings, settings.archive.path)
        self.con: duckdb.DuckDBPyConnection | None = None
        self.staged: list[tuple[Any, ...]] = []

    async def start(self, bus: Bus) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        cols = ", ".join(f"{name} {sql}" for name, sql in core.COLUMNS)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS decisions ({cols})")
        self.con.execute("CREATE TABLE IF NOT EXISTS positions (stream VARCHAR PRIMARY KEY, seq BIGINT)")
        for stream, seq in self.con.execute("SELECT stream, seq FROM positions").fetchall():
            self.positions[stream] = seq

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        try:
            decision = decode_json("decision", msg.data)
        except ContractError as exc:
            raise Invalid(str(exc)) from exc
        if isinstance(decision, Decision):
            self.staged.append(core.to_row(decision, msg.seq))
        return ()

    async def commit(self) -> None:
        assert self.con is not None
        if not self.staged and not self.positions:
            return
        con = self.con
        con.execute("BEGIN")
        try:
            if self.staged:
                appender = con.appender("decisions", action="upsert")
                appender.append_rows(self.staged)
                appender.flush()
            for stream, seq in self.positions.items():
                con.execute("INSERT OR REPLACE INTO positions VALUES (?, ?)", [stream, seq])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        self.counters["archived"] += len(self.staged)
        self.staged = []

    async def stop(self) -> None:
        if self.con is not None:
            self.con.close()


def build(settings: Settings) -> Archiver:
    return Archiver(settings)
