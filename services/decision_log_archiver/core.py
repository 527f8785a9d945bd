"""decision-log-archiver core (pure): a decision → an archive row, and the schema.

The archive schema lives here so the sink, the docs and the tests share it.

Table ``decisions`` (one row per decision id; a redelivered or re-sent
decision replaces its row with identical values, so it is stored once):

==================  ===========  ==============================================
column              type         meaning
==================  ===========  ==============================================
id                  VARCHAR PK   decision id (Gatekeeper ``decisionId``)
time_ns             BIGINT       event time of the decision, ns since the epoch (exact)
time                TIMESTAMPTZ  the same as a timestamp (UTC; generated from time_ns)
source              VARCHAR      anomaly | throttle | gatekeeper | self_test …
event_type          VARCHAR      anomaly | throttle | audit_violation | webhook_violation …
action              VARCHAR      alert | suppress | throttle | dryrun | deny | warn …
rule                VARCHAR      rule id, or ``<constraintKind>/<constraintName>``
message             VARCHAR      human-readable reason
severity            VARCHAR      for Vigil's own decisions
resource_kind       VARCHAR      Kubernetes resource (Gatekeeper)
resource_namespace  VARCHAR
resource_name       VARCHAR
image_name          VARCHAR      workload fields (Vigil's own decisions)
image_tag           VARCHAR
container_id        VARCHAR
pod                 VARCHAR
audit_id            VARCHAR      audit run (its RFC3339 start time), for audit violations
count               BIGINT       decisions folded into this one (throttling, dedup)
input               JSON         the admission/audit input object
details             JSON         violation details
constraint_group    VARCHAR      Gatekeeper's export (ExportMsg): the constraint's API group,
constraint_version  VARCHAR      version,
constraint_kind     VARCHAR      kind (also from the seed's constraintKind),
constraint_name     VARCHAR      name (also from the seed's constraintName),
constraint_namespace VARCHAR     namespace
enforcement_actions VARCHAR[]    a ``scoped`` constraint's actions (``action`` is ``scoped``)
constraint_annotations MAP       the constraint's annotations (VARCHAR → VARCHAR)
resource_group      VARCHAR      the resource's API group
resource_api_version VARCHAR     the resource's API version
resource_labels     MAP          the resource's labels (VARCHAR → VARCHAR)
request_uid         VARCHAR      admission: the request's uid
operation           VARCHAR      admission: CREATE | UPDATE | DELETE | CONNECT
request_resource    VARCHAR      admission: the requested resource and subresource
request_subresource VARCHAR
request_username    VARCHAR      admission: who asked (name, uid, groups)
request_user_uid    VARCHAR
request_user_groups VARCHAR[]
dry_run             BOOLEAN      admission: the request's dryRun (NULL for other decisions)
stream_seq          BIGINT       DECISIONS stream sequence the row was written from
==================  ===========  ==============================================

Lists and maps are never NULL (empty when the decision has none).

Table ``positions (stream PK, seq)``: the highest stream sequence whose
decisions are committed, written in the same transaction as the rows.

Migration: an archive written by an older Vigil lacks some columns;
:func:`migration_statements` adds them (existing rows get the empty value) and
fills ``constraint_kind``/``constraint_name`` of the Gatekeeper rows from their
``rule``, in one transaction, when the archive is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from contracts.codec import encode_json
from contracts.decisions import Decision

TABLE = "decisions"
POSITIONS = "positions"

_SQL_TYPES: dict[Any, str] = {
    str: "VARCHAR",
    int: "BIGINT",
    Any: "JSON",
    tuple[str, ...]: "VARCHAR[]",
    dict[str, str]: "MAP(VARCHAR, VARCHAR)",
    bool | None: "BOOLEAN",
}
"""The column type of each field type of :class:`Decision` (a new field of another type
fails at import: say here how it is stored)."""

_FIELDS = msgspec.structs.fields(Decision)
assert [f.name for f in _FIELDS[:2]] == ["id", "time"]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR PRIMARY KEY"),
    ("time_ns", "BIGINT"),
    ("time", "TIMESTAMPTZ GENERATED ALWAYS AS (make_timestamptz(time_ns // 1000)) VIRTUAL"),
    *((f.name, _SQL_TYPES[f.type]) for f in _FIELDS[2:]),
    ("stream_seq", "BIGINT"),
)
"""The archive's columns: every field of :class:`Decision`, in order, with ``time`` stored
exactly as ``time_ns`` (and readable as a timestamp), plus the stream sequence."""
_EMPTY = {"VARCHAR": "''", "VARCHAR[]": "[]::VARCHAR[]", "MAP(VARCHAR, VARCHAR)": "MAP {}::MAP(VARCHAR, VARCHAR)"}


def create_statements() -> list[str]:
    cols = ", ".join(f"{name} {sql}" for name, sql in COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({cols})",
        f"CREATE TABLE IF NOT EXISTS {POSITIONS} (stream VARCHAR PRIMARY KEY, seq BIGINT)",
    ]


def migration_statements(existing: set[str]) -> list[str]:
    """What brings an archive whose ``decisions`` table has the columns ``existing`` to
    :data:`COLUMNS`: each missing column added (existing rows get the empty value:
    ``''``, an empty list or map, NULL otherwise), then, if the constraint's kind and name
    were missing, the Gatekeeper rows' filled from their ``rule`` (``<kind>/<name>``).
    Nothing when the table is current (or new)."""
    missing = [(name, sql) for name, sql in COLUMNS if name not in existing]
    if not existing or not missing:
        return []
    out = [
        f"ALTER TABLE {TABLE} ADD COLUMN {name} {sql}" + (f" DEFAULT {_EMPTY[sql]}" if sql in _EMPTY else "")
        for name, sql in missing
    ]
    if "constraint_kind" in dict(missing):
        out.append(
            f"UPDATE {TABLE} SET constraint_kind = split_part(rule, '/', 1), "
            "constraint_name = substr(rule, strpos(rule, '/') + 1) "
            "WHERE source = 'gatekeeper' AND constraint_kind = '' AND strpos(rule, '/') > 0"
        )
    return out


# A BIGINT column: a value out of its range is invalid input, not a commit that fails forever.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _row_field(f: msgspec.structs.FieldInfo) -> tuple[str, Any] | tuple[str, Any, Any]:
    """A :class:`Decision` field as the archive reads it (see :data:`Row`)."""
    if f.name in ("input", "details"):
        return f.name, msgspec.Raw, msgspec.Raw()
    kind = {int: Int64, tuple[str, ...]: list[str]}.get(f.type, f.type)
    if f.required:
        return f.name, kind
    empty: dict[Any, Any] = {tuple[str, ...]: [], dict[str, str]: {}}  # msgspec copies an empty list or dict default
    return f.name, kind, empty.get(f.type, f.default)


Row: Any = msgspec.defstruct(
    "Row",
    [_row_field(f) for f in _FIELDS],
    kw_only=True,
    frozen=True,
    gc=False,
    tag_field="kind",
    tag=Decision.__struct_config__.tag,
    module=__name__,
)
""":class:`Decision` as the archive reads it, derived from it field by field:
``input`` and ``details`` stay raw JSON text (no decode and re-encode on the hot
path), integers must fit their BIGINT columns, lists are lists. Same fields, same
validation otherwise; anything else falls back to the intake normaliser."""


row_decoder = msgspec.json.Decoder(Row)


def _raw(value: msgspec.Raw) -> str | None:
    text = bytes(value)
    return None if not text or text == b"null" else text.decode()


def _json(value: Any) -> str | None:
    return None if value is None else encode_json(value).decode()


def _gatekeeper(d: Any) -> tuple[Any, ...]:
    """The stored values of the Gatekeeper export's fields (lists as lists, maps as dicts)."""
    return (
        d.constraint_group, d.constraint_version, d.constraint_kind, d.constraint_name, d.constraint_namespace,
        list(d.enforcement_actions), dict(d.constraint_annotations), d.resource_group, d.resource_api_version,
        dict(d.resource_labels), d.request_uid, d.operation, d.request_resource, d.request_subresource,
        d.request_username, d.request_user_uid, list(d.request_user_groups), d.dry_run,
    )  # fmt: skip


def row_of(r: Any, stream_seq: int) -> tuple[Any, ...]:
    """The stored values of a :class:`Row` (:data:`COLUMNS` order, generated columns left out)."""
    return (
        r.id, r.time, r.source, r.event_type, r.action, r.rule, r.message, r.severity,
        r.resource_kind, r.resource_namespace, r.resource_name, r.image_name, r.image_tag,
        r.container_id, r.pod, r.audit_id, r.count, _raw(r.input), _raw(r.details), *_gatekeeper(r), stream_seq,
    )  # fmt: skip


def to_row(decision: Decision, stream_seq: int) -> tuple[Any, ...]:
    """The stored values of a decision (:data:`COLUMNS` order, generated columns left out)."""
    d = decision
    return (
        d.id, d.time, d.source, d.event_type, d.action, d.rule, d.message, d.severity,
        d.resource_kind, d.resource_namespace, d.resource_name, d.image_name, d.image_tag,
        d.container_id, d.pod, d.audit_id, d.count, _json(d.input), _json(d.details), *_gatekeeper(d), stream_seq,
    )  # fmt: skip


Staged = tuple[bytes, int, int]
"""A decision as a batch holds it until commit, under its id: its payload (Vigil's
tagged decision JSON, validated as a :class:`Row`), its time and its stream sequence.
No decoded :class:`Row` is kept: a full batch is a DuckDB row group (122,880)."""


_GETTERS = tuple(attrgetter(name) for name in Row.__struct_fields__)
_RAW_AT = (Row.__struct_fields__.index("input"), Row.__struct_fields__.index("details"))


def columns(staged: Mapping[str, Staged]) -> list[list[Any]]:
    """The stored values of a batch column by column, built in Python (:data:`COLUMNS`
    order, generated columns left out; column ``i`` of the row staged as ``(data, _,
    seq)`` is ``row_of(row_decoder.decode(data), seq)[i]``, its id the key it is
    staged under). The archive's fallback when DuckDB's JSON reader refuses a payload
    that msgspec accepted (see :data:`FROM_PAYLOADS`)."""
    rows = [row_decoder.decode(data) for data, _, _ in staged.values()]
    cols = [list(map(get, rows)) for get in _GETTERS]
    cols[0] = list(staged)  # the key, as FROM_PAYLOADS stores it
    for i in _RAW_AT:
        cols[i] = list(map(_raw, cols[i]))
    cols.append([seq for _, _, seq in staged.values()])
    return cols


STAGED = "staged_decisions"
"""The name a batch is registered under (an Arrow table) while it is inserted."""

STORED = tuple(name for name, sql in COLUMNS if "GENERATED" not in sql)
"""The columns an insert writes, in order."""

_PARSED = Row.__struct_fields__[2:]  # what DuckDB reads from the payload: all but id and time
assert STORED == ("id", "time_ns", *_PARSED, "stream_seq")
_SQL = dict(COLUMNS)
_DEFAULTS = dict(zip(Row.__struct_fields__[-len(Row.__struct_defaults__) :], Row.__struct_defaults__, strict=True))
_STRUCTURE = encode_json({f: _SQL[f] for f in _PARSED}).decode()


def _parsed(field: str) -> str:
    sql = _SQL[field]
    if sql in ("JSON", "BOOLEAN"):
        return f"j.{field}"  # absent or null: NULL, as in row_of
    if sql in _EMPTY and sql != "VARCHAR":
        return f"coalesce(j.{field}, {_EMPTY[sql]})"  # absent or null: empty, as in row_of
    return f"coalesce(j.{field}, {_DEFAULTS.get(field, '')!r})"


FROM_PAYLOADS = (
    f"SELECT id, time_ns, {', '.join(map(_parsed, _PARSED))}, stream_seq "
    f"FROM (SELECT id, time_ns, stream_seq, from_json(payload, '{_STRUCTURE}') AS j FROM {STAGED})"
)
"""The stored columns of the staged relation ``(id, time_ns, payload, stream_seq)``,
the archive's write path: DuckDB parses each payload itself (in C++, on every
core) into exactly what :func:`row_of` gives — string fields absent → ``''``,
``count`` absent → 1, ``input``/``details`` absent or null → NULL, otherwise
their JSON (minified by DuckDB). The id and time come from Python's validated
:class:`Row` (a payload with a duplicated key is read first-wins by DuckDB and
last-wins by msgspec: the key the batch was deduplicated on must be the one stored)."""

FROM_COLUMNS = f"SELECT * FROM {STAGED}"
"""The stored columns of a staged relation built by :func:`columns` (the fallback)."""
