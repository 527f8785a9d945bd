"""DNS question parsing from captured query payloads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collector.dns import build_query, parse_question

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(st.lists(label, min_size=1, max_size=5), st.sampled_from([(1, "A"), (28, "AAAA"), (33, "SRV"), (99, "TYPE99")]))
def test_parse_round_trips(labels: list[str], qtype: tuple[int, str]) -> None:
    name = ".".join(labels)
    assert parse_question(build_query(name, qtype[0])) == (name, qtype[1])


def test_responses_and_garbage_are_not_queries() -> None:
    q = build_query("example.com")
    response = q[:2] + b"\x81\x80" + q[4:]
    assert parse_question(response) is None
    assert parse_question(q[:12]) is None
    assert parse_question(q[:15]) is None  # label runs past the end
    assert parse_question(b"\0" * 11) is None
    assert parse_question(q[:12] + b"\xc0\x0c\x00\x01\x00\x01") is None  # compression pointer


@given(st.binary(max_size=300))
def test_parse_never_raises(data: bytes) -> None:
    parse_question(data)
