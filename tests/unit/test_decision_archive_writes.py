"""The archiver's write path on a real DuckDB file, no broker: a batch goes in as one
Arrow table of payloads that DuckDB parses, by plain insert; a batch meeting ids
archived already is written again as an upsert in the same transaction — every id
stored once, with the position; a payload DuckDB cannot parse falls back to columns
built in Python."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import encode_decision_batch, encode_json
from contracts.decisions import Decision
from contracts.subjects import DECISIONS, INTAKE_DECISIONS
from services.decision_intake.client import gatekeeper_line
from services.decision_log_archiver import app as archive_app
from services.decision_log_archiver import core
from services.decision_log_archiver.app import INSERT_NEW, Archiver, arrow_table, payload_table
from services.runtime.service import Incoming, Invalid
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


def _stored(table: object, select: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    for statement in core.create_statements():
        con.execute(statement)
    con.register(core.STAGED, table)
    con.execute(INSERT_NEW + select)
    return con.execute(f"SELECT {', '.join(core.STORED)} FROM {core.TABLE} ORDER BY stream_seq").fetchall()


json_value = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=6)
    | st.lists(st.integers() | st.text(max_size=3), max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers() | st.none() | st.text(max_size=3), max_size=3)
)


@settings(deadline=None)  # each example writes a DuckDB file: 75-250 ms on a loaded 2-core machine
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.builds(
            Decision,
            id=st.just(""),
            time=st.integers(min_value=-(2**63), max_value=2**63 - 1),
            source=st.sampled_from(["anomaly", "gatekeeper"]),
            event_type=st.text(max_size=6),
            message=st.text(max_size=6),
            pod=st.text(max_size=3),
            count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
            input=json_value,
            details=json_value,
            constraint_kind=st.text(max_size=4),
            enforcement_actions=st.lists(st.text(max_size=4), max_size=2).map(tuple),
            constraint_annotations=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
            resource_labels=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
            request_user_groups=st.lists(st.text(max_size=4), max_size=2).map(tuple),
            dry_run=st.none() | st.booleans(),
        ),
        max_size=5,
    )
)
def test_both_write_paths_store_exactly_the_contract_rows(by_id: dict[str, Decision]) -> None:
    """What DuckDB parses from the payloads (the write path) and what Python builds column
    by column (the fallback) are, row for row, the contract's values (``core.to_row``)."""
    decisions = [msgspec.structs.replace(d, id=i) for i, d in by_id.items()]
    staged = {d.id: (encode_json(d), d.time, seq) for seq, d in enumerate(decisions)}
    expected = [core.to_row(d, seq) for seq, d in enumerate(decisions)]
    assert _stored(arrow_table(staged), core.FROM_COLUMNS) == expected  # the raw JSON text as received
    assert _documents(_stored(payload_table(staged), core.FROM_PAYLOADS)) == _documents(expected)  # DuckDB re-writes it


def _documents(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows with the JSON columns parsed: DuckDB writes the same document, minified, with
    its own choice of escapes (``\\u001F`` for ``\\u001f``)."""
    at = [core.STORED.index("input"), core.STORED.index("details")]
    return [tuple(json.loads(v) if i in at and v is not None else v for i, v in enumerate(row)) for row in rows]


def test_a_batch_duckdb_cannot_parse_is_written_from_python_columns(tmp_path: Path, monkeypatch) -> None:
    """Should DuckDB's JSON reader refuse a payload msgspec accepted, no decision is lost:
    the batch is written from columns built in Python (counted), redeliveries included."""
    archiver = Archiver(make_settings(tmp_path, "nats://127.0.0.1:1"))

    def unreadable(staged: object) -> object:
        table = payload_table(staged)
        return table.set_column(2, "payload", pa.array(["{not json"] * table.num_rows))

    monkeypatch.setattr(archive_app, "payload_table", unreadable)
    try:
        _deliver(archiver, [(1, _decision(1)), (2, _decision(2))])
        _deliver(archiver, [(3, _decision(2, "again")), (4, _decision(3))])  # meets an archived id: the upsert
        assert archiver.con is not None
        rows = archiver.con.execute("SELECT id, message, stream_seq, input FROM decisions ORDER BY id").fetchall()
    finally:
        archiver._close()
    assert rows == [("d-1", "m1", 1, '{"i":1}'), ("d-2", "again", 3, '{"i":2}'), ("d-3", "m3", 4, '{"i":3}')]
    assert archiver.counters["python_column_batches"] == 2 and archiver.counters["upsert_batches"] == 1


@pytest.mark.parametrize("field", ["time", "count"])
def test_an_integer_beyond_bigint_is_a_dead_letter_not_a_failing_commit(tmp_path: Path, field: str) -> None:
    archiver = Archiver(make_settings(tmp_path, "nats://127.0.0.1:1"))
    d = msgspec.structs.replace(msgspec.json.decode(_decision(1), type=Decision), **{field: 2**63})
    with pytest.raises(Invalid, match="cannot be archived"):
        archiver.handle(
            Incoming(id="1", subject=INTAKE_DECISIONS, stream=DECISIONS, seq=1, data=encode_json(d), headers={})
        )
    assert archiver.staged == {}


def test_a_batch_message_stages_its_good_entries_and_dead_letters_the_bad(tmp_path: Path) -> None:
    """A DecisionBatch counts as its entries, each read as if it had come alone (a
    Gatekeeper-shaped one too); a bad entry sends the message to the dead letters with
    the reason, and costs the good ones nothing."""
    archiver = Archiver(make_settings(tmp_path, "nats://127.0.0.1:1"))
    good = encode_decision_batch("b1", [_decision(1), gatekeeper_line(2), _decision(3)])
    mixed = encode_decision_batch("b2", [_decision(4), b'{"kind":"decision.v1","id":""}', _decision(5)])
    try:
        archiver.handle(Incoming(id="1", subject=INTAKE_DECISIONS, stream=DECISIONS, seq=1, data=good, headers={}))
        with pytest.raises(Invalid, match="1 of 3 entries of the batch invalid"):
            archiver.handle(Incoming(id="2", subject=INTAKE_DECISIONS, stream=DECISIONS, seq=2, data=mixed, headers={}))
        archiver.positions[DECISIONS] = 2
        asyncio.run(archiver.commit())
        assert archiver.con is not None
        rows = archiver.con.execute("SELECT id, stream_seq FROM decisions ORDER BY id").fetchall()
    finally:
        archiver._close()
    assert rows == [("d-00000002", 1), ("d-1", 1), ("d-3", 1), ("d-4", 2), ("d-5", 2)]
