"""The intake's directory follower: Gatekeeper's disk-export files, read where they
are written (a volume shared with Gatekeeper's audit and controller-manager pods),
into DECISIONS.

Each pass lists the directory and its channel subdirectories, reads every file from
its offset (:mod:`follow`), publishes the accepted lines as the socket does (a
DecisionBatch per file chunk, :func:`core.publications`, ``Nats-Msg-Id`` from the
decision ids), waits until JetStream stored them, and only then moves the files'
offsets and writes them to ``<data_dir>/intake/gatekeeper-dir.json`` (atomically).

Invariants:

- **Exactly once across restarts and renames.** A file is tracked by device and
  inode, so ``.txt`` → ``.log`` and ``.open`` → ``.log`` change nothing; offsets are
  saved only after the publish acks. A crash between the acks and the save re-reads
  those lines: the same decision ids, dropped by JetStream's duplicate window and, past
  it, kept once by the archive (upsert by id) and the audit files (one line per id).
- **No line lost to Gatekeeper's retention.** A file being read is held open, so
  when Gatekeeper deletes it, what Vigil had not read yet is still read through
  the open descriptor. A file that vanished before Vigil could open or finish it
  (Vigil was down, or it came and went between two passes) is counted
  (``dir_files_lost``, its path in the heartbeat's samples) and logged.
- **Bad lines never stop it.** A rejected line is counted by reason, published as a
  dead letter on ``vigil.dlq.decision-intake`` (its file, offset, reason and bytes)
  and skipped; a line longer than ``decision_intake.max_line_bytes`` is skipped to
  its end. A publish that is not acknowledged is retried next pass from the same
  offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from contracts import intake as normaliser
from contracts.codec import encode_json
from contracts.decisions import DeadLetter
from contracts.subjects import INTAKE_DECISIONS, dlq_subject
from services.decision_intake import core, follow
from services.runtime.bus import Bus, Publisher
from services.runtime.errors import PublishError
from services.runtime.files import write_atomically
from services.runtime.settings import Settings

log = logging.getLogger("vigil.intake.dir")
SERVICE = "decision-intake"
STATE_FILE = "intake/gatekeeper-dir.json"
READ_CHUNK = 256 * 1024
PASS_BUDGET = 8 << 20  # bytes read per pass at most (then published, stored, and the next pass follows at once)
SAMPLES = 5

Line = tuple[int, bytes | normaliser.Rejected]  # a line's offset in its file, and the line or why it was refused


@dataclass
class Read:
    """What one pass read from one file, until it is stored."""

    key: str
    lines: list[Line]
    offset: int  # where the file's offset goes once these are stored
    complete: bool
    size: int
    closing: bool = False  # the file is deleted: close it once stored


@dataclass
class Listed:
    path: Path
    stat: os.stat_result


@dataclass
class Follower:
    """Follows one directory; :meth:`step` is one pass (tests call it directly)."""

    settings: Settings
    bus: Bus
    root: Path
    counters: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.expanduser().resolve()
        self.state_path = self.settings.data_path / STATE_FILE
        self.max_line = self.settings.decision_intake.max_line_bytes
        self.max_batch_bytes = max(1, self.bus.nc.max_payload // 2)
        self.files: dict[str, follow.FileState] = {}
        self.fds: dict[str, int] = {}
        self._saved = b""
        self._missing_root = False

    # --- life cycle -----------------------------------------------------------------------

    def load(self) -> None:
        try:
            state = msgspec.json.decode(self.state_path.read_bytes(), type=follow.Positions)
        except FileNotFoundError:
            return
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s unreadable (%s): reading %s from the start", self.state_path, exc, self.root)
            return
        if Path(state.dir) != self.root:
            log.info("%s followed %s before, now %s: starting afresh", self.state_path, state.dir, self.root)
            return
        self.files = state.files

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    async def run(self, stopping: asyncio.Event) -> None:
        """Pass after pass until ``stopping``: at once while there is more to read, else every
        ``decision_intake.gatekeeper_poll_interval``."""
        self.load()
        poll = float(self.settings.decision_intake.gatekeeper_poll_interval)
        pub = Publisher(self.bus.nc, window=self.settings.nats.publish_window)
        try:
            await pub.start()
            while not stopping.is_set():
                busy = await self._step_or_wait(pub)
                if not busy:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stopping.wait(), poll)
        finally:
            with contextlib.suppress(Exception):
                await pub.close()
            self.close()

    async def _step_or_wait(self, pub: Publisher) -> bool:
        try:
            return await self.step(pub)
        except PublishError as exc:
            self.counters["dir_not_stored"] += 1
            log.warning("lines of %s not stored, read again next pass: %s", self.root, exc)
        except OSError as exc:
            self.counters["dir_errors"] += 1
            log.warning("following %s: %s", self.root, exc)
        return False

    # --- one pass -------------------------------------------------------------------------

    async def step(self, pub: Publisher) -> bool:
        """One pass: list, read, publish, wait for the acks, move the offsets, save them.
        True when the read budget ran out (there is more to read now)."""
        listing = self._list()
        reads = self._gone(listing)
        budget = PASS_BUDGET
        for key, item in sorted(listing.items(), key=lambda kv: str(kv[1].path)):
            read = self._read_listed(key, item, budget)
            if read is not None:
                reads.append(read)
                budget -= read.offset - self.files[key].offset
        await self._store(pub, reads)
        self._commit(reads)
        return budget <= 0

    def _list(self) -> dict[str, Listed]:
        """The export files in the directory and its channel subdirectories, by ``dev:inode``."""
        try:
            dirs = [self.root, *(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))]
        except FileNotFoundError:
            if not self._missing_root:
                log.warning("%s does not exist (yet): Gatekeeper creates it with its Connection", self.root)
            self._missing_root = True
            return {}
        self._missing_root = False
        out: dict[str, Listed] = {}
        for directory in dirs:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(directory):
                    if follow.is_export_file(entry.name) and entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(FileNotFoundError):
                            st = entry.stat(follow_symlinks=False)
                            out[f"{st.st_dev}:{st.st_ino}"] = Listed(Path(entry.path), st)
        return out

    def _gone(self, listing: dict[str, Listed]) -> list[Read]:
        """Tracked files missing from the listing: read to their end through the open
        descriptor if they were deleted, else counted missing (then forgotten or lost)."""
        reads: list[Read] = []
        for key in [k for k in self.files if k not in listing]:
            state = self.files[key]
            fd = self.fds.get(key)
            if fd is not None:
                read = self._read_open(key, fd)
                if read is not None:
                    reads.append(read)
                continue
            verdict = follow.gone(state)
            if verdict != "keep":
                del self.files[key]
            if verdict == "lost":
                self._lost(state.path, f"read {state.offset} of {state.size}+ bytes")
        return reads

    def _read_open(self, key: str, fd: int) -> Read | None:
        """A file held open but no longer listed: renamed out of sight (read on) or deleted
        (read to its end, then closed)."""
        state = self.files[key]
        st = os.fstat(fd)
        deleted = st.st_nlink == 0
        final = deleted and follow.is_complete(state.path)
        budget = max(PASS_BUDGET, st.st_size - state.offset) if deleted else PASS_BUDGET  # deleted: all of it
        lines, offset = self._lines(fd, state.offset, final, budget)
        if deleted and offset < st.st_size:
            self.counters["dir_torn_lines"] += 1
            log.warning("%s deleted with an unfinished last line (%d bytes): not read", state.path, st.st_size - offset)
        return Read(key, lines, offset, final, st.st_size, closing=deleted)

    def _read_listed(self, key: str, item: Listed, budget: int) -> Read | None:
        state = self.files.get(key)
        size, path = item.stat.st_size, str(item.path)
        complete = follow.is_complete(item.path.name)
        if state is not None and state.done and complete and size == state.size and state.path == path:
            state.missing = 0
            return None  # read to its end already (another file on this inode would have another name)
        fd = self._open(key, item)
        if fd is None:
            return None
        state = self.files[key]
        state.missing, state.path = 0, path
        lines, offset = self._lines(fd, state.offset, complete, budget)
        return Read(key, lines, offset, complete, size)

    def _open(self, key: str, item: Listed) -> int | None:
        """The file's descriptor, opened (and checked to be the file tracked under this
        inode, else tracked afresh) if it is not open yet."""
        if key in self.fds:
            return self.fds[key]
        try:
            fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if item.stat.st_size:
                self._lost(str(item.path), "gone before it could be opened")
            return None
        state = self.files.get(key)
        if state is None or _digest(fd, state.head_len) != state.head:
            if state is not None and not state.done:  # a file Vigil was reading, deleted while it was down
                self._lost(state.path, f"read {state.offset} of {state.size}+ bytes, its inode now another file's")
            state = self.files[key] = follow.FileState(path=str(item.path))
            self.counters["dir_files"] += 1
        self.fds[key] = fd
        return fd

    def _extend_head(self, state: follow.FileState, fd: int) -> None:
        """The digest of the file's first bytes, over lines read only (a writer that recovers a
        crashed segment cuts its torn end, never a complete line)."""
        if state.head_len < follow.HEAD and state.offset > state.head_len:
            state.head_len = min(state.offset, follow.HEAD)
            state.head = _digest(fd, state.head_len)

    # --- reading lines ----------------------------------------------------------------------

    def _lines(self, fd: int, offset: int, final: bool, budget: int) -> tuple[list[Line], int]:
        """Complete lines from ``offset`` (``final``: the file is complete, its unterminated
        end is a line too), about ``budget`` bytes at most; and the offset after them."""
        out: list[Line] = []
        start = offset
        while offset - start < budget:
            data = os.pread(fd, READ_CHUNK, offset)
            at_end = len(data) < READ_CHUNK
            framed, used = follow.frame(data, final and at_end)
            lines: list[tuple[int, bytes | normaliser.Rejected]] = list(framed)
            if not used and data and not at_end:
                long_line = self._long_line(fd, offset, final)
                if long_line is None:
                    break
                line, used = long_line
                lines = [(0, line)]
            out.extend((offset + at, self._bounded(line)) for at, line in lines)
            offset += used
            if at_end or not used:
                break
        return out, offset

    def _bounded(self, line: bytes | normaliser.Rejected) -> bytes | normaliser.Rejected:
        if isinstance(line, bytes) and len(line) > self.max_line:
            return normaliser.too_long(self.max_line)
        return line

    def _long_line(self, fd: int, offset: int, final: bool) -> tuple[bytes | normaliser.Rejected, int] | None:
        """A line longer than a read chunk at ``offset``: the line (within the limit), its
        rejection (beyond it: skipped to its newline), or None while it is unfinished."""
        data = os.pread(fd, self.max_line + 1, offset)
        newline = data.find(b"\n")
        if newline >= 0:
            return data[:newline], newline + 1
        if len(data) <= self.max_line:
            return (data, len(data)) if final else None
        end = _find_newline(fd, offset + len(data))
        if end is None and not final:
            return None
        stop = end + 1 if end is not None else os.fstat(fd).st_size
        return normaliser.too_long(self.max_line), stop - offset

    # --- publishing and committing -------------------------------------------------------------

    async def _store(self, pub: Publisher, reads: list[Read]) -> None:
        """Publish the lines of every read (decisions on the intake subject, refusals as dead
        letters) and wait until JetStream stored all of them; count them once stored."""
        sent, accepted_lines = 0, 0
        refused: list[tuple[str, int, normaliser.Rejected]] = []
        for read in reads:
            accepted: list[normaliser.Accepted] = []
            for at, line in read.lines:
                result = line if isinstance(line, normaliser.Rejected) else normaliser.normalise(line)
                if isinstance(result, normaliser.Accepted):
                    accepted.append(result)
                    continue
                refused.append((self.files[read.key].path, at, result))
                await pub.publish(dlq_subject(SERVICE), *self._dead_letter(read.key, at, line, result))
            for publication in core.publications(accepted, self.max_batch_bytes):
                await pub.publish(INTAKE_DECISIONS, publication.data, publication.msg_id)
                sent += 1
            accepted_lines += len(accepted)
        acks = await pub.flush()
        self.counters["dir_accepted"] += accepted_lines
        self.counters["dir_messages"] += sent
        self.counters["dir_duplicates"] += sum(ack.duplicate for ack in acks)
        for path, at, why in refused:
            self.counters["dir_rejected"] += 1
            self.counters[f"dir_rejected_{why.kind}"] += 1
            self._sample("dir_rejected", f"{path}@{at}: {why.reason}")

    def _dead_letter(
        self, key: str, at: int, line: bytes | normaliser.Rejected, why: normaliser.Rejected
    ) -> tuple[bytes, str]:
        """A refused line as a dead letter (its file and offset, the reason, its bytes) and its id."""
        state = self.files[key]
        letter = DeadLetter(
            id=f"dlq:{SERVICE}:{key}:{state.head}:{at}",
            service=SERVICE,
            reason=why.reason,
            subject=f"file:{state.path}@{at}",
            payload=line[:65536] if isinstance(line, bytes) else b"",
        )
        return encode_json(letter), letter.id

    def _commit(self, reads: list[Read]) -> None:
        """The reads are stored: move the offsets, close what is done or deleted, save."""
        for read in reads:
            state = self.files[read.key]
            self.counters["dir_lines"] += len(read.lines)
            follow.advance(state, read.offset, read.complete, read.size)
            if read.key in self.fds:
                self._extend_head(state, self.fds[read.key])
            if read.closing:
                del self.files[read.key]
            if read.closing or state.done:
                self.counters["dir_files_done"] += state.done
                with contextlib.suppress(KeyError, OSError):
                    os.close(self.fds.pop(read.key))
        self._save()

    def _save(self) -> None:
        data = msgspec.json.encode(follow.Positions(dir=str(self.root), files=self.files))
        if data != self._saved:
            write_atomically(self.state_path, data)
            self._saved = data

    def _lost(self, path: str, why: str) -> None:
        self.counters["dir_files_lost"] += 1
        self._sample("dir_files_lost", path)
        log.warning("Gatekeeper file %s vanished before Vigil read it all (%s)", path, why)

    def _sample(self, counter: str, text: str) -> None:
        kept = self.samples.setdefault(counter, [])
        kept.append(text[:300])
        del kept[:-SAMPLES]


def _digest(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()[:32] if length else ""


def _find_newline(fd: int, offset: int) -> int | None:
    """The offset of the next newline at or after ``offset``, or None before the end of the file."""
    while data := os.pread(fd, READ_CHUNK, offset):
        at = data.find(b"\n")
        if at >= 0:
            return offset + at
        offset += len(data)
    return None
