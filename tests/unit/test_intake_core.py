"""The intake's pure normaliser: every shape read the same way, every bad line a reason, never an exception."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from contracts.codec import encode_json
from contracts.decisions import AuditFinished, AuditStarted, Decision, DecisionBatch, batch_entries, decision_decoder
from contracts.intake import Accepted, Rejected, normalise, parse_rfc3339
from services.decision_intake.client import gatekeeper_line, marker_line
from services.decision_intake.core import MAX_BATCH_MESSAGES, publications, split_lines


def test_gatekeeper_line_becomes_a_decision() -> None:
    result = normalise(gatekeeper_line(7, audit_id="2026-01-10T08:00:00Z"))
    assert isinstance(result, Accepted)
    d = result.message
    assert isinstance(d, Decision)
    assert (d.id, d.source, d.event_type, d.action, d.rule) == (
        "d-00000007",
        "gatekeeper",
        "audit_violation",
        "dryrun",
        "K8sRequiredLabels/constraint-0",
    )
    assert (d.resource_kind, d.resource_namespace, d.resource_name) == ("Deployment", "ns-7", "web-7")
    assert d.audit_id == "2026-01-10T08:00:00Z"
    assert d.time == parse_rfc3339("2026-01-10T00:00:07.007Z")
    assert d.details == {"container": "app"}
    assert result.msg_id == "decision:d-00000007"


def test_markers_and_tagged_messages() -> None:
    started = normalise(marker_line("audit_started", "2026-01-10T08:00:00Z"))
    finished = normalise(marker_line("audit_finished", "2026-01-10T08:00:00Z", 3))
    assert isinstance(started, Accepted) and isinstance(started.message, AuditStarted)
    assert isinstance(finished, Accepted) and isinstance(finished.message, AuditFinished)
    assert finished.message.violations == 3
    assert started.msg_id != finished.msg_id
    own = Decision(id="anomaly:1", time=5, source="anomaly", event_type="anomaly")
    again = normalise(encode_json(own))
    assert isinstance(again, Accepted) and again.message == own


def test_rfc3339_keeps_nanoseconds_and_offsets() -> None:
    assert parse_rfc3339("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0
    assert parse_rfc3339("2026-13-01T00:00:00Z") is None
    assert parse_rfc3339("yesterday") is None


def test_bad_lines_have_reasons() -> None:
    cases = {
        b"": "empty",
        b"{nope": "invalid_json",
        b"[1, 2]": "not_an_object",
        b'{"decisionId": "\xff\xfe", "timeStamp": "x"}': "invalid_utf8",
        b'{"decisionId": 5, "timeStamp": "2026-01-01T00:00:00Z", "eventType": "audit_violation"}': "invalid_fields",
        b'{"decisionId": "a", "timeStamp": "2026-01-01T00:00:00Z", "eventType": "mutation"}': "invalid_fields",
        b'{"decisionId": "a", "timeStamp": "soon", "eventType": "webhook_violation"}': "invalid_fields",
        b'{"decisionId": "", "timeStamp": "2026-01-01T00:00:00Z", "eventType": "webhook_violation"}': "invalid_fields",
        b'{"eventType": "audit_started", "auditId": "../../etc/passwd"}': "invalid_fields",
        b'{"kind": "decision.v1", "id": "x"}': "invalid_fields",
    }
    for line, kind in cases.items():
        result = normalise(line)
        assert isinstance(result, Rejected), line
        assert result.kind == kind, (line, result)
        assert result.reason


def test_split_lines_keeps_the_unfinished_rest() -> None:
    assert split_lines(b"a\nb\r\nc") == ([b"a", b"b"], b"c")
    assert split_lines(b"a\n") == ([b"a"], b"")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
gatekeeper_keys = st.sampled_from(
    ["timeStamp", "decisionId", "eventType", "constraintAction", "auditId", "kind", "input", "message", "id", "time"]
)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_result_never_an_exception(data: bytes) -> None:
    result = normalise(data)
    assert isinstance(result, Accepted | Rejected)


@given(st.dictionaries(gatekeeper_keys, json_values, max_size=8))
def test_any_object_gives_a_result_and_accepted_ones_round_trip(doc: dict[str, object]) -> None:
    result = normalise(msgspec.json.encode(doc))
    if isinstance(result, Accepted):
        assert normalise(encode_json(result.message)) == result  # the normalised form is a fixed point
    else:
        assert result.reason and result.kind


@given(st.integers(min_value=0, max_value=10**6))
def test_valid_lines_are_always_accepted_deterministically(i: int) -> None:
    line = gatekeeper_line(i)
    first, second = normalise(line), normalise(line)
    assert isinstance(first, Accepted) and first == second


@given(
    st.lists(st.integers(min_value=0, max_value=30), min_size=0, max_size=60),
    st.integers(min_value=200, max_value=5000),
)
def test_publications_keep_every_line_once_in_order_within_the_limits(pads: list[int], max_bytes: int) -> None:
    """A read's accepted lines become as few messages as fit: each line exactly once, in
    order; a batch within max_bytes and MAX_BATCH_MESSAGES; a lone line as it was; ids
    that do not depend on when they are computed."""
    accepted = [normalise(gatekeeper_line(i, prefix="p" + "x" * pad)) for i, pad in enumerate(pads)]
    assert all(isinstance(a, Accepted) for a in accepted)
    sent = publications(accepted, max_bytes)  # type: ignore[arg-type]
    assert publications(accepted, max_bytes) == sent  # type: ignore[arg-type]
    unpacked: list[object] = []
    for p in sent:
        entries = batch_entries(p.data)
        if p.count == 1:
            assert entries is None and p.msg_id == accepted[len(unpacked)].msg_id  # type: ignore[union-attr]
            unpacked.append(decision_decoder.decode(p.data))
        else:
            assert entries is not None and len(entries) == p.count <= MAX_BATCH_MESSAGES
            assert len(p.data) <= max_bytes + 64 + len(p.msg_id)  # the lines within the limit, plus the envelope
            batch = msgspec.json.decode(p.data, type=DecisionBatch)
            assert batch.id == p.msg_id and p.msg_id.startswith("batch:")
            unpacked.extend(batch.messages)
    assert unpacked == [a.message for a in accepted]  # type: ignore[union-attr]


def test_a_full_read_is_split_at_the_message_count() -> None:
    accepted = [normalise(gatekeeper_line(i)) for i in range(MAX_BATCH_MESSAGES + 5)]
    sent = publications(accepted, 1 << 30)  # type: ignore[arg-type]
    assert [p.count for p in sent] == [MAX_BATCH_MESSAGES, 5]
