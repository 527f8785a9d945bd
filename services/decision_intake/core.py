"""Decision intake core (pure): the accepted lines of one read → the bus messages that
carry them, and line framing.

What a line means is decided by :func:`contracts.intake.normalise` (Gatekeeper's export
as it ships, Dapr's CloudEvent around it, the decision log proposed in the seed, Vigil's
own tagged messages), the one reader every consumer shares; this module only groups
what it accepted.

Invariants: pure (no I/O, no clock); every accepted line goes out exactly once, in
order; the id of a message depends only on the ids of the lines it carries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from contracts.codec import encode_decision_batch, encode_json
from contracts.intake import Accepted

MAX_BATCH_MESSAGES = 1000


@dataclass(frozen=True, slots=True)
class Publication:
    """One bus message the intake publishes: one accepted line as it is, or several as a
    DecisionBatch; ``count`` lines are answered with its ack."""

    msg_id: str
    data: bytes
    count: int


def publications(accepted: list[Accepted], max_bytes: int) -> list[Publication]:
    """The accepted lines of one read, in order, as few bus messages as fit: consecutive
    lines go in one DecisionBatch of at most ``max_bytes`` and :data:`MAX_BATCH_MESSAGES`
    (a lone line, or one too large to share, goes alone, as it was). A batch's id is a
    hash of its lines' ids, so the same lines sent again are stored once; any other
    re-send is stored again and is harmless downstream (the archive and the audit files
    keep a decision once by its id)."""
    out: list[Publication] = []
    group: list[tuple[str, bytes]] = []
    size = 0

    def close() -> None:
        if len(group) == 1:
            out.append(Publication(group[0][0], group[0][1], 1))
        elif group:
            digest = hashlib.sha256("\n".join(i for i, _ in group).encode()).hexdigest()[:32]
            out.append(
                Publication(
                    f"batch:{digest}", encode_decision_batch(f"batch:{digest}", [d for _, d in group]), len(group)
                )
            )
        group.clear()

    for result in accepted:
        data = encode_json(result.message)
        if group and (size + len(data) + 1 > max_bytes or len(group) >= MAX_BATCH_MESSAGES):
            close()
            size = 0
        group.append((result.msg_id, data))
        size += len(data) + 1
    close()
    return out


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of a read buffer (newline stripped, ``\\r`` too) and the unfinished rest."""
    *lines, rest = buffer.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines], rest


__all__ = ["MAX_BATCH_MESSAGES", "Publication", "publications", "split_lines"]
