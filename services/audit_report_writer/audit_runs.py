"""Audit-run files: the adapter that applies :mod:`core`'s file effects to disk.

Directory: ``audit_reports.dir`` (default ``<data_dir>/audit``). Per run:
``<id>.txt`` (open) → ``<id>.log`` (finished) and ``<id>.json`` (summary);
``finished.json`` remembers finished run ids so a redelivered marker cannot
reopen a run whose files retention already deleted; ``positions.json`` holds
the last DECISIONS sequence applied (written with every commit that changed a
file; between those, at most every ``POSITION_INTERVAL`` seconds, so after a
crash only decisions that changed nothing can be read again). Order matters
here (an end marker closes the run), so the app is ``stateful``: after a
restart the runner delivers from that position + 1, in stream order, and a
violation in flight when the writer died is never overtaken by the end of its
run.

Crash safety (effects are applied in :meth:`AuditRuns.commit`, which the runner
calls before it acks the inputs):

- new files and summaries are written to a temp file, fsynced and renamed;
  renames are followed by an fsync of the directory;
- appends are fsynced; a failed append is truncated back, so a retried commit
  does not write a line twice;
- on start every ``.txt`` is rebuilt with :func:`core.recover_open` (torn last
  line, premature end marker and duplicate decision ids dropped), so a crash
  at any point neither loses (unacked inputs are redelivered) nor duplicates
  (redelivered lines are recognised by decision id) a line.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec

from contracts.decisions import batch_entries
from contracts.intake import Rejected, normalise
from contracts.subjects import DECISIONS, ConsumerSpec
from services.audit_report_writer import core
from services.runtime.bus import data_path
from services.runtime.files import fsync_dir, write_atomically
from services.runtime.service import Incoming, Invalid, Outgoing, each_entry
from services.runtime.settings import Settings

CONSUMER = ConsumerSpec(DECISIONS, "audit-report-writer")
INDEX = "finished.json"
POSITIONS = "positions.json"
# positions.json is written (fsynced) with every commit that changed a file, else at
# most this often (wall clock, an adapter concern): decisions that are not part of an
# audit run change nothing, and re-reading a few seconds of them after a crash is
# harmless, while an fsync per commit cost the writer most of its CPU (bench.e2e).
POSITION_INTERVAL = 5.0


class AuditRuns:
    """Audit-run files from the DECISIONS stream (one consumer of audit-report-writer)."""

    def __init__(self, settings: Settings, counters: Counter[str], positions: dict[str, int]) -> None:
        self.dir = data_path(settings, settings.audit_reports.dir)
        self.keep_runs = settings.audit_reports.keep_runs
        self.counters = counters
        self.positions = positions  # the app's, shared with the runner; DECISIONS' entry is ours
        self._saved_position = 0
        self._saved_at = 0.0
        self.state = core.State()
        self.pending: list[core.Effect] = []

    # --- start: the files are the state ------------------------------------------------

    def load(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._saved_position = _read_position(self.dir / POSITIONS)
        if self._saved_position:
            self.positions[DECISIONS] = self._saved_position
        for audit_id in _read_index(self.dir / INDEX):
            self.state.finished[audit_id] = None
        for summary in sorted(self.dir.glob("*.json")):
            if summary.name == INDEX or not summary.with_suffix(".log").exists():
                continue
            doc = msgspec.json.decode(summary.read_bytes())
            audit_id = str(doc["auditId"])
            self.state.finished[audit_id] = None
            self.state.kept[audit_id] = core.start_time(audit_id, 0)
        for txt in sorted(self.dir.glob("*.txt")):
            self._recover(txt)
        self.pending.extend(core.retention(self.state, self.keep_runs))
        self.commit()

    def _recover(self, txt: Path) -> None:
        content = txt.read_bytes()
        audit_id = _audit_id_of(content) or txt.stem
        if audit_id in self.state.finished:  # finished, crashed before the rename
            self.pending.append(core.FinishRun(txt.stem, b"", b""))
            return
        run, fixed = core.recover_open(audit_id, content)
        self.state.open[audit_id] = run
        if fixed != content:
            write_atomically(txt, fixed)
            self.counters["audit_lines_repaired"] += 1

    # --- stream ---------------------------------------------------------------------------

    def handle(self, msg: Incoming) -> Sequence[Outgoing]:
        entries = batch_entries(msg.data)
        if entries is None:
            self._one(msg.data)
        else:
            each_entry(entries, self._one)  # the good entries count; a bad one dead-letters the message
        return ()

    def _one(self, data: bytes) -> None:
        result = normalise(data)
        if isinstance(result, Rejected):
            raise Invalid(result.reason)
        self.pending.extend(core.step(self.state, result.message, self.keep_runs))

    def commit(self) -> None:
        """Apply pending effects in order; an effect is dropped only once it is on disk."""
        appends: dict[str, list[bytes]] = {}
        changed_files = bool(self.pending)
        while self.pending:
            effect = self.pending[0]
            if isinstance(effect, core.AppendLine):
                appends.setdefault(effect.name, []).append(effect.line)
            else:
                self._flush_appends(appends)
                self._apply(effect)
            self.pending.pop(0)
        self._flush_appends(appends)
        position = self.positions.get(DECISIONS, 0)
        due = time.monotonic() - self._saved_at >= POSITION_INTERVAL
        if position != self._saved_position and (changed_files or due):
            write_atomically(self.dir / POSITIONS, msgspec.json.encode({DECISIONS: position}) + b"\n")
            self._saved_position, self._saved_at = position, time.monotonic()

    def _flush_appends(self, appends: dict[str, list[bytes]]) -> None:
        for name, lines in appends.items():
            _append(self.dir / f"{name}.txt", lines)
            self.counters["audit_lines"] += len(lines)
        appends.clear()

    def _apply(self, effect: core.Effect) -> None:
        if isinstance(effect, core.OpenRun):
            txt = self.dir / f"{effect.name}.txt"
            if not txt.exists():
                write_atomically(txt, effect.line + b"\n")
                self.counters["audit_runs_opened"] += 1
        elif isinstance(effect, core.FinishRun):
            self._finish(effect)
        elif isinstance(effect, core.DeleteRun):
            for suffix in (".log", ".json"):
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / f"{effect.name}{suffix}").unlink()
            self.counters["audit_runs_deleted"] += 1

    def _finish(self, effect: core.FinishRun) -> None:
        txt = self.dir / f"{effect.name}.txt"
        if effect.line:
            _append(txt, [effect.line])
            write_atomically(self.dir / f"{effect.name}.json", effect.summary + b"\n")
            write_atomically(self.dir / INDEX, msgspec.json.encode(list(self.state.finished)) + b"\n")
        if txt.exists():
            os.replace(txt, txt.with_suffix(".log"))
            fsync_dir(self.dir)
        self.counters["audit_runs_finished"] += 1


# --- file primitives -----------------------------------------------------------------------


def _append(path: Path, lines: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            os.write(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # a retried commit must not find half of this append
            raise
    finally:
        os.close(fd)


def _read_index(path: Path) -> list[str]:
    try:
        return [str(x) for x in msgspec.json.decode(path.read_bytes())]
    except (FileNotFoundError, msgspec.DecodeError):
        return []


def _read_position(path: Path) -> int:
    try:
        return int(msgspec.json.decode(path.read_bytes()).get(DECISIONS, 0))
    except (FileNotFoundError, msgspec.DecodeError, AttributeError, ValueError):
        return 0


def _audit_id_of(content: bytes) -> str:
    first = content.split(b"\n", 1)[0]
    try:
        return str(msgspec.json.decode(first).get("auditId", ""))
    except (msgspec.DecodeError, AttributeError):
        return ""
