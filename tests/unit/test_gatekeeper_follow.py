"""The directory follower's pure rules: which files are Gatekeeper's, line framing with
offsets, when a missing file is forgotten or reported lost, offsets never going back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.decision_intake import follow


def test_export_files_are_the_disk_drivers_names() -> None:
    """pkg/export/disk (gatekeeper @ dd8507eb97f5ca24dbee34c95d8e6ffa053cb8a0): audit_file.go
    <run>.txt → .log; admission_file.go admission-<time>-<hex>.open → .log, .recovered.log,
    .log.deleting while removed."""
    names = {
        "2023-07-18T21_21_52Z.txt": (True, False),
        "2023-07-18T21_21_52Z.log": (True, True),
        "admission-20260729T101530.123456789Z-0a1b2c3d4e5f6071.open": (True, False),
        "admission-20260729T101530.123456789Z-0a1b2c3d4e5f6071.log": (True, True),
        "admission-20260729T101530.123456789Z-0a1b2c3d4e5f6071.recovered.log": (True, True),
        "admission-20260729T101530.123456789Z-0a1b2c3d4e5f6071.log.deleting": (False, False),
        ".2023-07-18T21_21_52Z.txt.swp": (False, False),
        "notes.md": (False, False),
    }
    for name, (export, complete) in names.items():
        assert (follow.is_export_file(name), follow.is_export_file(name) and follow.is_complete(name)) == (
            export,
            complete,
        ), name


def test_frame_keeps_an_unfinished_line_for_later_unless_the_file_is_complete() -> None:
    assert follow.frame(b'{"a":1}\n{"b":2}\r\n{"c"', final=False) == ([(0, b'{"a":1}'), (8, b'{"b":2}')], 17)
    assert follow.frame(b'{"a":1}\n{"c":3}', final=True) == ([(0, b'{"a":1}'), (8, b'{"c":3}')], 15)
    assert follow.frame(b"", final=True) == ([], 0)
    assert follow.frame(b"\n\n", final=False) == ([(0, b""), (1, b"")], 2)


@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.binary(max_size=8))
def test_frame_loses_no_byte_and_offsets_point_at_the_lines(lines: list[bytes], tail: bytes) -> None:
    tail = tail.replace(b"\n", b"")
    data = b"".join(line + b"\n" for line in lines) + tail
    framed, used = follow.frame(data, final=False)
    assert used == len(data) - len(tail)
    for at, line in framed:
        assert data[at : at + len(line)] == line
    assert [line for _, line in framed] == [line[:-1] if line.endswith(b"\r") else line for line in lines]


def test_a_missing_file_is_forgotten_or_lost_only_after_two_listings() -> None:
    read = follow.FileState(path="a.log", offset=10, size=10, done=True)
    unread = follow.FileState(path="b.txt", offset=4, size=10)
    assert [follow.gone(read), follow.gone(read)] == ["keep", "forget"]
    assert [follow.gone(unread), follow.gone(unread)] == ["keep", "lost"]


def test_offsets_never_go_back_and_done_needs_a_complete_file_read_to_its_end() -> None:
    state = follow.FileState(path="r.txt")
    follow.advance(state, 100, complete=False, size=100)
    assert (state.offset, state.done) == (100, False)  # read to its end, but still being written
    follow.advance(state, 50, complete=True, size=120)
    assert (state.offset, state.done) == (100, False)  # renamed .log, 20 bytes left
    follow.advance(state, 120, complete=True, size=120)
    assert (state.offset, state.done) == (120, True)
