"""A minimal intake client (what Gatekeeper's exporter transport would do): write
ndjson lines to the socket while reading the answers, one per line; and, for tests
and benchmarks, lines in Gatekeeper's shapes and files written as its disk driver
writes them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

_decoder = msgspec.json.Decoder(dict)


async def send_lines(path: Path | str, lines: Iterable[bytes], chunk_lines: int = 500) -> list[dict[str, object]]:
    """Send lines (without newlines) over one connection; return the answers in order."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    pending = list(lines)

    async def write() -> None:
        for start in range(0, len(pending), chunk_lines):
            writer.write(b"".join(line + b"\n" for line in pending[start : start + chunk_lines]))
            await writer.drain()

    writing = asyncio.create_task(write())
    answers: list[dict[str, object]] = []
    try:
        while len(answers) < len(pending):
            raw = await reader.readline()
            if not raw:
                raise ConnectionError(f"intake closed the connection after {len(answers)} answers")
            answers.append(_decoder.decode(raw))
        await writing
    finally:
        writing.cancel()
        writer.close()
    return answers


def gatekeeper_line(i: int, audit_id: str = "", day: int = 10, prefix: str = "d") -> bytes:
    """A valid Gatekeeper decision line (tests and benchmarks)."""
    event = "audit_violation" if audit_id else "webhook_violation"
    doc: dict[str, object] = {
        "timeStamp": f"2026-01-{day:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
        "decisionId": f"{prefix}-{i:08d}",
        "message": f"Deployment web-{i % 50} allows the following containers to run as root: app",
        "eventType": event,
        "constraintKind": ("RunAsNonRoot", "K8sRequiredLabels", "K8sAllowedRepos")[i % 3],
        "constraintName": f"constraint-{i % 7}",
        "constraintAction": ("deny", "dryrun")[i % 2],
        "resourceKind": "Deployment",
        "resourceNamespace": f"ns-{i % 10}",
        "resourceName": f"web-{i % 50}",
        "input": {"review": {"object": {"metadata": {"name": f"web-{i % 50}"}}}},
        "details": {"container": "app"},
    }
    if audit_id:
        doc["auditId"] = audit_id
    return msgspec.json.encode(doc)


def marker_line(event: str, audit_id: str, violations: int | None = None) -> bytes:
    doc: dict[str, object] = {"eventType": event, "auditId": audit_id, "timeStamp": audit_id}
    if violations is not None:
        doc["violations"] = violations
    return msgspec.json.encode(doc)


def ids_of(answers: Sequence[dict[str, object]]) -> list[str]:
    return [str(a["id"]) for a in answers if a.get("ok")]


# --- Gatekeeper's violation export as it ships (pkg/export/util.ExportMsg) --------------------


def export_line(i: int, run: str, prefix: str = "web") -> bytes:
    """A ``violation_audited`` line of audit run ``run`` as Gatekeeper's audit writes it
    (tests and benchmarks): a K8sRequiredLabels constraint, one Pod per ``i``."""
    doc: dict[str, object] = {
        "id": run,
        "details": {"missing_labels": ["test"]},
        "eventType": "violation_audited",
        "group": "constraints.gatekeeper.sh",
        "version": "v1beta1",
        "kind": ("K8sRequiredLabels", "K8sAllowedRepos")[i % 2],
        "name": f"constraint-{i % 5}",
        "message": 'you must provide labels: {"test"}',
        "enforcementAction": ("deny", "dryrun", "warn")[i % 3],
        "resourceAPIVersion": "v1",
        "resourceKind": "Pod",
        "resourceNamespace": f"ns-{i % 10}",
        "resourceName": f"{prefix}-{i:08d}",
        "resourceLabels": {"app": f"app-{i % 7}", "pod-template-hash": "58899467f5"},
    }
    return msgspec.json.encode(doc)


def admission_line(i: int, request: str, timestamp: str = "2026-01-10T08:30:00.123456789Z") -> bytes:
    """A ``violation_admission`` line of admission request ``request`` (tests and benchmarks):
    violation ``i`` (constraint ``constraint-<i>``) of a denied Pod creation by alice."""
    doc = msgspec.json.decode(export_line(0, request))
    doc.update(
        eventType="violation_admission",
        name=f"constraint-{i}",
        resourceNamespace="nginx",
        resourceName=f"denied-{request}",
        resourceLabels={"app": "denied-export"},
        timestamp=timestamp,
        operation="CREATE",
        requestResource="pods",
        requestUsername="alice@example.com",
        requestUserUID="user-1",
        requestUserGroups=["developers", "system:authenticated"],
        dryRun=False,
    )
    return msgspec.json.encode(doc)


def export_marker(run: str, started: bool) -> bytes:
    """An audit run marker as Gatekeeper's audit publishes it (no eventType)."""
    return msgspec.json.encode({"id": run, "message": "audit is started" if started else "audit is completed"})


class GatekeeperDisk:
    """Writes files exactly as Gatekeeper's disk driver does (``pkg/export/disk``; tests and
    benchmarks): under ``<root>/<channel>/``, an audit run is ``<run, ':' → '_'>.txt`` opened
    at its start marker (append mode), one line per message, renamed ``.log`` after the
    completion marker is written, then ``.log`` files beyond ``max_audit_results`` deleted,
    oldest modification first; admission segments are ``admission-<time>-<hex>.open``,
    renamed ``.log`` when full, deleted by way of ``.log.deleting``."""

    def __init__(self, root: Path, channel: str = "audit-channel", max_audit_results: int = 3) -> None:
        self.dir = Path(root) / channel
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_audit_results = max_audit_results
        self._run: tuple[str, BinaryIO] | None = None

    def start(self, run: str) -> None:
        path = self.dir / (run.replace(":", "_") + ".txt")
        self._run = (run, open(path, "ab", buffering=0))  # noqa: SIM115 - held open while the run lasts
        self.write(export_marker(run, started=True))

    def write(self, line: bytes) -> None:
        assert self._run is not None, "no audit run open"
        self._run[1].write(line + b"\n")

    def complete(self) -> None:
        assert self._run is not None, "no audit run open"
        run, fh = self._run
        self.write(export_marker(run, started=False))
        fh.close()
        txt = self.dir / (run.replace(":", "_") + ".txt")
        os.rename(txt, txt.with_suffix(".log"))
        self._run = None
        self.cleanup()

    def cleanup(self) -> None:
        runs = [p for p in self.dir.glob("*.log") if not p.name.startswith("admission-")]
        runs.sort(key=lambda p: (p.stat().st_mtime_ns, str(p)))
        for old in runs[: max(0, len(runs) - self.max_audit_results)]:
            old.unlink()

    def open_segment(self, name: str) -> Path:
        """A new admission segment (``.open``, created exclusively), to :meth:`append` to."""
        path = self.dir / f"admission-{name}.open"
        path.touch(exist_ok=False)
        return path

    @staticmethod
    def append(path: Path, lines: list[bytes]) -> None:
        with open(path, "ab") as fh:
            fh.write(b"".join(line + b"\n" for line in lines))

    @staticmethod
    def finish_segment(path: Path) -> Path:
        """The segment is full: published as ``.log``."""
        ready = path.with_suffix(".log")
        os.rename(path, ready)
        return ready

    @staticmethod
    def delete_segment(path: Path) -> None:
        deleting = path.with_name(path.name + ".deleting")
        os.rename(path, deleting)
        deleting.unlink()
