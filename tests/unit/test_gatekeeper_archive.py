"""The archive keeps what Gatekeeper sent: its columns hold every field of the export, the
SQL of docs/decisions.md answers from them, and an archive written by the previous
schema is migrated with its rows kept (a real DuckDB file, no broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from contracts.codec import encode_json
from contracts.decisions import Decision
from contracts.intake import Accepted, normalise
from contracts.subjects import DECISIONS, INTAKE_DECISIONS
from services.decision_intake.client import admission_line, export_line, export_marker, gatekeeper_line
from services.decision_log_archiver import core, query
from services.decision_log_archiver.app import Archiver
from services.runtime.service import Incoming
from tests.support import make_settings

RUNS = ("2026-01-10T08:00:00Z", "2026-01-10T09:00:00Z")

# The queries docs/decisions.md gives ("Gatekeeper in SQL"); a test fails if they stop answering.
PER_CONSTRAINT_PER_RUN = """
SELECT audit_id AS run, constraint_kind, constraint_name, count(*) AS violations
FROM decisions WHERE event_type = 'violation_audited'
GROUP BY ALL ORDER BY run DESC, violations DESC, constraint_kind, constraint_name
"""
NEWEST_RUN = """
SELECT constraint_kind, constraint_name, enforcement_actions, resource_kind, resource_namespace, resource_name, message
FROM decisions
WHERE audit_id = (SELECT audit_id FROM decisions WHERE event_type = 'violation_audited' ORDER BY time DESC LIMIT 1)
ORDER BY resource_name
"""
DENIALS_BY_USER = """
SELECT request_username, count(*) AS denials, count(*) FILTER (WHERE dry_run) AS in_dry_runs
FROM decisions
WHERE event_type = 'violation_admission' AND (action = 'deny' OR list_contains(enforcement_actions, 'deny'))
GROUP BY ALL ORDER BY denials DESC
"""
BY_LABEL = "SELECT count(*) FROM decisions WHERE resource_labels['app'] = 'app-3'"
BY_ACTION = "SELECT count(*) FROM decisions WHERE action = 'deny' OR list_contains(enforcement_actions, 'deny')"


def _deliver(archiver: Archiver, lines: list[bytes]) -> None:
    for seq, line in enumerate(lines, 1):
        archiver.handle(
            Incoming(id=str(seq), subject=INTAKE_DECISIONS, stream=DECISIONS, seq=seq, data=line, headers={})
        )
    asyncio.run(archiver.commit())


def _lines() -> list[bytes]:
    """Two audit runs (12 and 7 violations, as Gatekeeper writes them), an admission request
    with three violations, another by a second user in a dry run."""
    lines: list[bytes] = []
    for run, n in zip(RUNS, (12, 7), strict=True):
        lines += [export_marker(run, True), *(export_line(i, run) for i in range(n)), export_marker(run, False)]
    lines += [admission_line(i, "req-1") for i in range(3)]
    bob = (
        admission_line(0, "req-2")
        .replace(b'"alice@example.com"', b'"bob"')
        .replace(b'"dryRun":false', b'"dryRun":true')
    )
    return [*lines, bob]


def _sql(archiver: Archiver, sql: str) -> list[tuple[object, ...]]:
    assert archiver.con is not None
    return query.run(archiver.con.cursor(), sql, 1000).rows


def test_gatekeeper_fields_are_columns_the_documented_sql_answers_from(tmp_path: Path) -> None:
    archiver = Archiver(make_settings(tmp_path, "nats://127.0.0.1:1"))  # no broker is contacted
    try:
        _deliver(archiver, _lines())
        _deliver(archiver, _lines())  # read again (a file re-read, a re-sent line): stored once
        per_run = _sql(archiver, PER_CONSTRAINT_PER_RUN)
        newest = _sql(archiver, NEWEST_RUN)
        denials = _sql(archiver, DENIALS_BY_USER)
        by_label, by_action = _sql(archiver, BY_LABEL), _sql(archiver, BY_ACTION)
        total = _sql(archiver, "SELECT count(*), count(DISTINCT id) FROM decisions")
        row = _sql(
            archiver,
            "SELECT constraint_group, constraint_version, resource_api_version, resource_labels, operation, "
            "request_resource, request_user_groups, dry_run, request_uid FROM decisions WHERE request_uid = 'req-1' "
            "ORDER BY constraint_name LIMIT 1",
        )
    finally:
        archiver._close()
    assert total == [(12 + 7 + 3 + 1, 12 + 7 + 3 + 1)]
    assert sum(n for run, _, _, n in per_run if run == RUNS[1]) == 7 and per_run[0][0] == RUNS[1]
    assert {(kind, name) for _, kind, name, _ in per_run} == {
        (kind, f"constraint-{c}") for kind in ("K8sRequiredLabels", "K8sAllowedRepos") for c in range(5)
    }
    assert len(newest) == 7 and newest[0][3:6] == ("Pod", "ns-0", "web-00000000")
    assert denials == [("alice@example.com", 3, 0), ("bob", 1, 1)]
    assert by_label == [(sum(1 for n in (12, 7) for i in range(n) if i % 7 == 3),)]
    assert by_action == [(sum(1 for n in (12, 7) for i in range(n) if i % 3 == 0) + 4,)]
    assert row == [
        ("constraints.gatekeeper.sh", "v1beta1", "v1", {"app": "denied-export"}, "CREATE", "pods",
         ["developers", "system:authenticated"], False, "req-1"),
    ]  # fmt: skip


# The schema of the archive before this change (services/decision_log_archiver/core.py at 79b5f69).
OLD_SCHEMA = (
    "CREATE TABLE decisions (id VARCHAR PRIMARY KEY, time_ns BIGINT, "
    "time TIMESTAMPTZ GENERATED ALWAYS AS (make_timestamptz(time_ns // 1000)) VIRTUAL, source VARCHAR, "
    "event_type VARCHAR, action VARCHAR, rule VARCHAR, message VARCHAR, severity VARCHAR, resource_kind VARCHAR, "
    "resource_namespace VARCHAR, resource_name VARCHAR, image_name VARCHAR, image_tag VARCHAR, "
    "container_id VARCHAR, pod VARCHAR, audit_id VARCHAR, count BIGINT, input JSON, details JSON, stream_seq BIGINT)",
    "CREATE TABLE positions (stream VARCHAR PRIMARY KEY, seq BIGINT)",
)


def _old_archive(path: Path) -> None:
    """An archive as the previous Vigil wrote it: a seed-shaped Gatekeeper decision, an anomaly."""
    con = duckdb.connect(str(path))
    for statement in OLD_SCHEMA:
        con.execute(statement)
    seed = normalise(gatekeeper_line(1, audit_id=RUNS[0]))
    assert isinstance(seed, Accepted) and isinstance(seed.message, Decision)
    old = seed.message
    con.execute(
        "INSERT INTO decisions (id, time_ns, source, event_type, action, rule, message, severity, resource_kind, "
        "resource_namespace, resource_name, image_name, image_tag, container_id, pod, audit_id, count, input, "
        "details, stream_seq) VALUES (?, ?, 'gatekeeper', ?, ?, ?, ?, '', ?, ?, ?, '', '', '', '', ?, 1, ?, ?, 1)",
        [old.id, old.time, old.event_type, old.action, old.rule, old.message, old.resource_kind,
         old.resource_namespace, old.resource_name, old.audit_id, encode_json(old.input).decode(),
         encode_json(old.details).decode()],
    )  # fmt: skip
    con.execute(
        "INSERT INTO decisions VALUES ('anomaly:1', 5, 'anomaly', 'anomaly', 'alert', 'exec', 'new exec', 'high', "
        "'', '', '', 'nginx', '1.25', 'c1', 'web-0', '', 3, NULL, NULL, 2)"
    )
    con.execute("INSERT INTO positions VALUES ('DECISIONS', 2)")
    con.close()


def test_an_archive_of_the_previous_schema_is_migrated_with_its_rows(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nats://127.0.0.1:1")
    _old_archive(settings.data_path / settings.archive.path)
    archiver = Archiver(settings)
    try:
        archiver._open()
        _deliver(archiver, [export_line(0, RUNS[1]), gatekeeper_line(2, audit_id=RUNS[0])])  # written after
        rows = _sql(
            archiver,
            "SELECT id, source, rule, constraint_kind, constraint_name, count, image_name, enforcement_actions, "
            "resource_labels, dry_run, input->>'$.review.object.metadata.name' FROM decisions ORDER BY id",
        )
        positions = _sql(archiver, "SELECT * FROM positions")
        columns = [name for (name,) in _sql(archiver, "SELECT column_name FROM (DESCRIBE decisions)")]
    finally:
        archiver._close()
    assert archiver.counters["archive_migrated"] == 1
    assert sorted(columns) == sorted(name for name, _ in core.COLUMNS)
    assert rows == [
        ("anomaly:1", "anomaly", "exec", "", "", 3, "nginx", [], {}, None, None),  # kept; empty values
        ("d-00000001", "gatekeeper", "K8sRequiredLabels/constraint-1", "K8sRequiredLabels", "constraint-1",
         1, "", [], {}, None, "web-1"),  # kept; constraint filled from rule
        ("d-00000002", "gatekeeper", "K8sAllowedRepos/constraint-2", "K8sAllowedRepos", "constraint-2",
         1, "", [], {}, None, "web-2"),  # written after, from the seed's shape
        (rows[3][0], "gatekeeper", "K8sRequiredLabels/constraint-0", "K8sRequiredLabels", "constraint-0", 1, "", [],
         {"app": "app-0", "pod-template-hash": "58899467f5"}, None, None),  # written after, as Gatekeeper ships it
    ]  # fmt: skip
    assert rows[3][0].startswith("gk:")
    assert positions == [("DECISIONS", 2)]  # the batch above committed no position (none was set)
    again = Archiver(settings)
    try:
        again._open()  # current: nothing to do
    finally:
        again._close()
    assert again.counters["archive_migrated"] == 0


@pytest.mark.parametrize("existing", [set(), {name for name, _ in core.COLUMNS}])
def test_a_new_or_current_archive_needs_no_migration(existing: set[str]) -> None:
    assert core.migration_statements(existing) == []
