"""The opcode registry: every record round-trips; odd records are counted, never fatal."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st

from collector import abi
from collector.dns import build_query


def hdr(op: int, **kw: object) -> dict[str, object]:
    return {"ts": 5, "cgroup_id": 77, "pid": 10, "tid": 11, "uid": 1000, "op": op, "comm": b"curl", **kw}


def test_every_opcode_round_trips() -> None:
    stats = abi.DecodeStats()
    argv = b"".join(a.ljust(abi.ARG_LEN, b"\0") for a in (b"curl", b"-s", b"http://x"))
    cases = {
        abi.OP_EXEC: abi.encode("vigil_exec", **hdr(abi.OP_EXEC), ppid=9, argc=3, path=b"/usr/bin/curl", argv=argv),
        abi.OP_EXIT: abi.encode("vigil_exit", **hdr(abi.OP_EXIT), code=-1),
        abi.OP_OPEN: abi.encode("vigil_open", **hdr(abi.OP_OPEN), flags=0o2101, path=b"/etc/passwd"),
        abi.OP_CONNECT: abi.encode(
            "vigil_connect", **hdr(abi.OP_CONNECT), family=2, port=443, addr=socket.inet_aton("10.1.2.3")
        ),
        abi.OP_DNS: abi.encode(
            "vigil_dns", **hdr(abi.OP_DNS), len=len(build_query("a.b")), port=53, payload=build_query("a.b")
        ),
        abi.OP_CGROUP_MKDIR: abi.encode(
            "vigil_cgroup", **hdr(abi.OP_CGROUP_MKDIR), id=99, root=0, level=2, path=b"/k/x"
        ),
        abi.OP_CGROUP_RMDIR: abi.encode(
            "vigil_cgroup", **hdr(abi.OP_CGROUP_RMDIR), id=99, root=0, level=2, path=b"/k/x"
        ),
    }
    assert set(cases) == set(abi.REGISTRY)
    out = {op: abi.decode(data, stats) for op, data in cases.items()}
    assert out[abi.OP_EXEC] == abi.Exec(
        abi.Header(5, 77, 10, 11, 1000, "curl"), 9, "/usr/bin/curl", ["curl", "-s", "http://x"]
    )
    assert out[abi.OP_EXIT].code == -1
    assert out[abi.OP_OPEN].path == "/etc/passwd" and out[abi.OP_OPEN].flags == 0o2101
    assert out[abi.OP_CONNECT].port == 443 and out[abi.OP_CONNECT].addr[:4] == socket.inet_aton("10.1.2.3")
    assert out[abi.OP_DNS].payload == build_query("a.b")
    assert out[abi.OP_CGROUP_MKDIR].started and not out[abi.OP_CGROUP_RMDIR].started
    assert stats.decoded == len(cases) and stats.per_op == {op: 1 for op in cases}


def test_unknown_short_and_mismatched_records_are_counted() -> None:
    stats = abi.DecodeStats()
    good = abi.encode("vigil_open", **hdr(abi.OP_OPEN), path=b"/x")
    assert abi.decode(good[:20], stats) is None  # shorter than a header
    assert abi.decode(good[:100], stats) is None  # header fine, body cut
    assert abi.decode(abi.encode("vigil_exit", **hdr(200)), stats) is None  # opcode from a newer program
    assert abi.decode(abi.encode("vigil_open", **hdr(abi.OP_OPEN), size=100, path=b"/x"), stats) is None
    assert (stats.short, stats.unknown_op, stats.size_mismatch, stats.decoded) == (2, 1, 1, 0)


@given(st.binary(max_size=900))
def test_decode_never_raises(data: bytes) -> None:
    abi.decode(data, abi.DecodeStats())


def test_header_is_48_bytes_and_op_at_28() -> None:
    assert abi.STRUCTS["vigil_hdr"].size == 48
    assert abi.offsets("vigil_hdr")["op"] == (28, 2)


def test_set_bits_of_a_syscall_bitmap() -> None:
    from collector.ebpf import set_bits

    words = [0] * abi.SYSCALL_WORDS
    for nr in (0, 1, 63, 64, 257, 435, 511):
        words[nr // 64] |= 1 << (nr % 64)
    assert set_bits(words) == [0, 1, 63, 64, 257, 435, 511]
    assert set_bits([0] * abi.SYSCALL_WORDS) == []
