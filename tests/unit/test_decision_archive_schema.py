"""One schema for a decision: the archive's columns (``COLUMNS``), the archiver's
``Row`` and its hand-written value tuples agree with the :class:`Decision`
contract, field by field, in order and by type. Adding a field to the contract
and not to the archive (or the other way round) fails here."""

from __future__ import annotations

import typing

import msgspec

from contracts.decisions import Decision
from services.decision_log_archiver import core

SQL_OF = {
    str: "VARCHAR",
    int: "BIGINT",
    typing.Any: "JSON",
    tuple[str, ...]: "VARCHAR[]",
    dict[str, str]: "MAP(VARCHAR, VARCHAR)",
    bool | None: "BOOLEAN",
}


def _column(field: str) -> str:
    return "time_ns" if field == "time" else field


def test_the_rows_fields_are_the_contracts_fields_in_order() -> None:
    assert core.Row.__struct_fields__ == Decision.__struct_fields__
    assert core.Row.__struct_config__.tag == Decision.__struct_config__.tag


def test_every_contract_field_has_its_column_of_the_matching_type_and_nothing_else_is_stored() -> None:
    sql = dict(core.COLUMNS)
    fields = msgspec.structs.fields(Decision)
    assert core.STORED == (*(_column(f.name) for f in fields), "stream_seq")
    for f in fields:
        assert sql[_column(f.name)].split(" PRIMARY KEY")[0] == SQL_OF[f.type], f.name
    generated = {name for name, type_ in core.COLUMNS if "GENERATED" in type_}
    assert generated == {"time"} and sql["stream_seq"] == "BIGINT"


def test_each_value_lands_in_its_own_column() -> None:
    """Every field set to a value of its own: the tuples written by hand put each in its column."""
    values: dict[str, typing.Any] = {}
    for i, f in enumerate(msgspec.structs.fields(Decision)):
        kind = SQL_OF[f.type]
        values[f.name] = {
            "VARCHAR": f"v{i}",
            "BIGINT": 1000 + i,
            "JSON": {"k": i},
            "VARCHAR[]": (f"v{i}",),
            "MAP(VARCHAR, VARCHAR)": {"k": f"v{i}"},
            "BOOLEAN": True,
        }[kind]
    decision = Decision(**values)
    stored = dict(zip(core.STORED, core.to_row(decision, 7), strict=True))
    row = core.row_decoder.decode(msgspec.json.encode(decision))
    from_row = dict(zip(core.STORED, core.row_of(row, 7), strict=True))
    assert from_row == stored
    for name, value in values.items():
        expected = (
            msgspec.json.encode(value).decode() if isinstance(value, dict) and name in ("input", "details") else value
        )
        got = stored[_column(name)]
        assert (list(got) if isinstance(value, tuple) else got) == (
            list(value) if isinstance(value, tuple) else expected
        ), name
    assert stored["stream_seq"] == 7
