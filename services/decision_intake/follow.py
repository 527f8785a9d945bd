"""Following Gatekeeper's disk-export directory (pure): which files, from where, and
what becomes of a file that is gone.

Gatekeeper's disk driver (``pkg/export/disk``) writes under ``<path>/<channel>/``:

- audit runs: ``<run id with ':' → '_'>.txt``, opened when the run starts, appended
  line by line, renamed ``.log`` when the run completes; then the oldest ``.log``
  files beyond ``maxAuditResults`` are deleted;
- admission segments: ``admission-<UTC time>-<random>.open``, appended, renamed
  ``.log`` when full or a minute old (``.recovered.log`` when a restarted writer
  recovers an abandoned one, its torn last line cut); deleted, oldest first, past
  20 segments / 20 MiB / 24 h, by way of a ``.log.deleting`` rename.

A file is known by its device and inode (a rename keeps them) plus a digest of its
first bytes read (up to :data:`HEAD`; complete lines only, which a recovering writer
never cuts), which tells a new file that reuses a deleted file's inode from the
file Vigil read. A file's **offset** is how many of its bytes have been
read *and stored*: every line before it is in JetStream. It only ever moves past
complete lines (a line still being written is left for the next pass), except at
the end of a file that is complete (``.log``): there an unterminated last line is
a line.

Invariants: a file's offset never goes back while it is tracked; a file is
forgotten only once it is gone from the directory (twice in a row, since a
directory listing may miss an entry being renamed) and, if it was not read to
its end, it is reported lost, never silently.
"""

from __future__ import annotations

import msgspec

HEAD = 512  # bytes of a file's beginning whose digest tells it from another file on the same inode
EXPORT_SUFFIXES = (".txt", ".log", ".open")
COMPLETE_SUFFIX = ".log"
MISSING_SCANS = 2  # listings in a row without the file before it counts as gone


class FileState(msgspec.Struct, kw_only=True):
    """What Vigil knows of one exported file (persisted across restarts)."""

    path: str
    offset: int = 0  # bytes read and stored
    size: int = 0  # size when last listed
    head: str = ""  # digest of the first head_len bytes (bytes read: head_len <= offset)
    head_len: int = 0
    done: bool = False  # complete (.log) and read to its end
    missing: int = 0  # listings in a row the file was not in


class Positions(msgspec.Struct, kw_only=True):
    """The follower's state file: the directory it follows and its files by ``dev:inode``."""

    dir: str
    files: dict[str, FileState] = {}


def is_export_file(name: str) -> bool:
    """An audit run (``.txt``/``.log``) or admission segment (``.open``/``.log``) Gatekeeper
    writes; not its ``.deleting`` remnants, not hidden files."""
    return not name.startswith(".") and name.endswith(EXPORT_SUFFIXES)


def is_complete(name: str) -> bool:
    """Gatekeeper renames a file ``.log`` once it writes nothing more to it."""
    return name.endswith(COMPLETE_SUFFIX)


def frame(data: bytes, final: bool) -> tuple[list[tuple[int, bytes]], int]:
    """The complete lines of ``data`` (newline and a trailing ``\\r`` stripped) with their
    offsets in ``data``, and how many bytes they span. The unterminated rest is a line
    only when ``final`` (the end of a complete file)."""
    *lines, rest = data.split(b"\n")
    out: list[tuple[int, bytes]] = []
    at = 0
    for line in lines:
        out.append((at, line[:-1] if line.endswith(b"\r") else line))
        at += len(line) + 1
    if final and rest:
        out.append((at, rest[:-1] if rest.endswith(b"\r") else rest))
        at += len(rest)
    return out, at


def gone(state: FileState) -> str:
    """One more listing without the file: ``"keep"`` (maybe a rename the listing missed),
    ``"forget"`` (gone, read to its end) or ``"lost"`` (gone before Vigil read it all)."""
    state.missing += 1
    if state.missing < MISSING_SCANS:
        return "keep"
    return "forget" if state.done else "lost"


def advance(state: FileState, offset: int, complete: bool, size: int) -> None:
    """Lines up to ``offset`` are stored: move on (never back) and note whether the file is done."""
    state.offset = max(state.offset, offset)
    state.size = max(size, state.offset)
    state.done = complete and state.offset >= size
