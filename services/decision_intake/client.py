"""A minimal intake client (what Gatekeeper's exporter transport would do):
write ndjson lines to the socket while reading the answers, one per line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

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
