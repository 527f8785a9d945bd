"""The archiver's write path on a real DuckDB file, no broker: a batch goes in as one
Arrow table by plain insert, and a batch meeting ids archived already is written again
as an upsert in the same transaction — every id stored once, with the position."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.subjects import DECISIONS, INTAKE_DECISIONS
from services.decision_intake.client import gatekeeper_line
from services.decision_log_archiver import core
from services.decision_log_archiver.app import Archiver
from services.runtime.service import Incoming
from tests.support import make_settings


def _decision(i: int, message: str = "") -> bytes:
    d = Decision(id=f"d-{i}", time=1_767_225_600_000_000_000 + i, source="anomaly", event_type="anomaly",
                 action="alert", message=message or f"m{i}", input={"i": i})  # fmt: skip
    return encode_json(d)


def _deliver(archiver: Archiver, payloads: list[tuple[int, bytes]]) -> None:
    for seq, data in payloads:
        archiver.handle(
            Incoming(id=str(seq), subject=INTAKE_DECISIONS, stream=DECISIONS, seq=seq, data=data, headers={})
        )
        archiver.positions[DECISIONS] = max(seq, archiver.positions.get(DECISIONS, 0))
    asyncio.run(archiver.commit())


def test_duplicates_within_and_across_batches_are_stored_once(tmp_path: Path) -> None:
    archiver = Archiver(make_settings(tmp_path, "nats://127.0.0.1:1"))  # no broker is contacted
    try:
        # batch 1: new ids only (plain insert), one id twice in the batch (last one wins)
        _deliver(archiver, [(1, _decision(1)), (2, _decision(2)), (3, _decision(2, "again")), (4, _decision(3))])
        # batch 2: a redelivery of archived ids mixed with new ones (insert fails, upsert)
        _deliver(archiver, [(5, _decision(1)), (6, _decision(4)), (7, _decision(3, "changed"))])
        # batch 3: a Gatekeeper-shaped line (the slow path) sent twice, then new ids again (plain insert)
        line = gatekeeper_line(9)
        _deliver(archiver, [(8, line), (9, line), (10, _decision(5))])
        _deliver(archiver, [(11, line), (12, _decision(6))])
        assert archiver.con is not None
        rows = archiver.con.execute("SELECT id, message, stream_seq, input FROM decisions ORDER BY id").fetchall()
        position = archiver.con.execute("SELECT seq FROM positions").fetchall()
    finally:
        archiver._close()
    assert [r[0] for r in rows] == ["d-00000009", "d-1", "d-2", "d-3", "d-4", "d-5", "d-6"]
    by_id = {r[0]: r for r in rows}
    assert by_id["d-1"][1:3] == ("m1", 5)  # replaced by its redelivery, identical values
    assert by_id["d-2"][1:3] == ("again", 3)
    assert by_id["d-3"][1:3] == ("changed", 7)
    assert by_id["d-1"][3] == '{"i":1}'  # JSON stored as received
    assert by_id["d-00000009"][2] == 11
    assert position == [(12,)]
    assert archiver.counters["sink_failures"] == 0
    assert archiver.counters["upsert_batches"] == 2  # batches 2 and 4 met archived ids; 1 and 3 did not
    assert archiver.counters["archived"] == 3 + 3 + 2 + 2


@given(
    st.lists(
        st.builds(
            Decision,
            id=st.text(min_size=1, max_size=8),
            time=st.integers(min_value=0, max_value=2**62),
            source=st.sampled_from(["anomaly", "gatekeeper"]),
            event_type=st.text(max_size=6),
            message=st.text(max_size=6),
            count=st.integers(min_value=0, max_value=10**6),
            input=st.none() | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
            details=st.none() | st.text(max_size=4),
        ),
        max_size=5,
    )
)
def test_columns_are_the_contract_rows_transposed(decisions: list[Decision]) -> None:
    """The column-wise batch (what goes to DuckDB) holds exactly the contract's row values."""
    staged = [(core.as_row(d), seq) for seq, d in enumerate(decisions)]
    expected = [core.to_row(d, seq) for seq, d in enumerate(decisions)]
    columns = core.columns(staged)
    assert len(columns) == len([c for c in core.COLUMNS if "GENERATED" not in c[1]])
    assert [tuple(col[k] for col in columns) for k in range(len(decisions))] == expected
