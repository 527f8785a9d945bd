"""Inputs the fuzzers found (and the bugs they showed), replayed through the same
properties without atheris. Each one failed before its fix."""

from __future__ import annotations

import msgspec
import pytest

from contracts import trace
from contracts.codec import ContractError, decode_batch, decode_drift, decode_json, encode_batch
from contracts.events import ClockTicked, EventBatch
from tests.fuzz import targets

# An EventBatch whose node is the single byte 0xa4: a msgpack str that is not UTF-8.
BAD_UTF8_BATCH = b"\x85\xa4type\xa8batch.v1\xa4node\xa1\xa4\xa4boot\xa1b\xa9first_seq\x00\xa6events\x90"


def test_invalid_utf8_in_a_msgpack_string_is_a_contract_error() -> None:
    """Found by fuzz_codec: msgspec raised UnicodeDecodeError, which the callers that
    catch ContractError (replay, `vigil events`, flush, model files) let through."""
    for decode in (decode_batch, decode_drift):
        with pytest.raises(ContractError):
            decode(BAD_UTF8_BATCH)
    with pytest.raises(ContractError):
        decode_json("alert", b'{"kind":"alert.v1","id":"\xa4"}')
    targets.check_codec(bytes([0]) + BAD_UTF8_BATCH)


@pytest.mark.parametrize(
    "time",
    [
        '"0132-12-10T00:00:00Z"',
        '"0001-01-01T00:00:00+01:00"',
        '"9999-12-31T23:59:59Z"',
        "-9223372036854775808",
        "18446744073709551615",
        "99999999999999999999999",
    ],
)
def test_times_the_bus_cannot_carry_are_trace_errors(time: str) -> None:
    """Found by fuzz_trace: a trace time outside int64 nanoseconds decoded, then
    crashed `vigil collect --from` in the msgpack encoder (OverflowError), or the
    trace writer (ValueError for year 0; year 132 written as "132-12-10T…", which
    does not read back) instead of naming the line."""
    line = b'{"kind":"tick","time":%s}' % time.encode()
    with pytest.raises(trace.TraceError, match="line 3: time out of range"):
        trace.decode_line(line, 3)
    targets.check_trace(line)


def test_the_edges_of_the_range_round_trip() -> None:
    assert trace.format_time(-(2**63 // 1000 * 1000)) == "1677-09-21T00:12:43.145225Z"
    for ns in (-(2**63 // 1000 * 1000), 2**63 - 1, 0, -1):
        event = trace.decode_line(b'{"kind":"tick","time":%d}' % ns)
        assert event == ClockTicked(time=ns)
        targets.check_trace(trace.encode_line(event).rstrip(b"\n"))
        assert msgspec.msgpack.decode(encode_batch(EventBatch(node="n", boot="b", first_seq=0, events=[event])))


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_satisfy_their_target(name: str) -> None:
    """The generated seed corpora are valid inputs (a fuzz run starts from them)."""
    check, seeds = targets.TARGETS[name]
    for seed in seeds():
        check(seed)
