"""Portable profiles (pure): a learned version as a :class:`ProfileDocument`, and back as commands.

``vigil profiles export --format json`` folds the version's ``BehaviourAdded`` events (what
the PROFILES stream holds since its last reset or eviction) and the learner's summary of
the version (first/last seen, states) into a document; ``vigil profiles import`` turns a
document into :class:`ImportBehaviour` commands the learner applies like any other
command, so the imported baseline is in the log and a replay reproduces it.

Invariants: a document is a function of the set of behaviours and the summary (sorted,
stable bytes); :func:`decode` accepts exactly what :func:`encode` writes (unknown fields
refused, so a typo is not silently dropped); :func:`commands` carries every behaviour of
the document exactly once, each command under ``max_bytes`` when encoded (one behaviour
larger than that travels alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from contracts.errors import VigilError
from contracts.events import EVENT_TYPES, EventType
from contracts.profiles import BehaviourAdded, ImportBehaviour, LearnedBehaviour, LearnedType, ProfileDocument

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ProfileDocument)


class DocumentInvalid(VigilError, ValueError):
    """Text that is not a profile document."""


def _key(b: BehaviourAdded) -> tuple[str, str, tuple[str, ...]]:
    return b.executable, b.behaviour, tuple(b.lineage)


def _fold(events: Iterable[BehaviourAdded]) -> dict[str, dict[Any, LearnedBehaviour]]:
    """Per event type, one entry per (executable, behaviour, lineage): access united, first/last time."""
    out: dict[str, dict[Any, LearnedBehaviour]] = {}
    for e in events:
        by_key = out.setdefault(e.event_type, {})
        old = by_key.get(_key(e))
        access = "".join(c for c in "rwx" if c in e.access or (old is not None and c in old.access))
        first = e.time if old is None else min(old.first_seen, e.time)
        last = e.time if old is None else max(old.last_seen, e.time)
        by_key[_key(e)] = LearnedBehaviour(
            behaviour=e.behaviour,
            executable=e.executable,
            access=access,
            lineage=list(e.lineage),
            first_seen=first,
            last_seen=last,
        )
    return out


def document(
    events: Iterable[BehaviourAdded],
    version: Mapping[str, Any],
    *,
    image_name: str,
    event_time: int = 0,
    dns_depth: int = 3,
) -> ProfileDocument:
    """The document of one version: ``version`` is the learner's summary of it (``profiles show``:
    ``image_tag``, ``first_seen``, ``last_seen``, ``states``); ``events`` its BehaviourAdded."""
    tag = str(version["image_tag"])
    folded = _fold(e for e in events if e.image_name == image_name and e.image_tag == tag)
    states: Mapping[str, str] = version.get("states", {})
    last_new: Mapping[str, int] = version.get("last_new", {})
    types: dict[str, LearnedType] = {}
    for et in EVENT_TYPES:
        found = sorted(folded.get(et, {}).items())
        if et in states or found:
            behaviours = [b for _, b in found]
            types[et] = LearnedType(
                state=states.get(et, "learning"),  # type: ignore[arg-type]
                count=len(behaviours),
                last_new=int(last_new.get(et, 0)),
                behaviours=behaviours,
            )
    return ProfileDocument(
        image_name=image_name,
        image_tag=tag,
        first_seen=int(version.get("first_seen", 0)),
        last_seen=int(version.get("last_seen", 0)),
        event_time=event_time,
        dns_match_max_depth=dns_depth,
        event_types=types,  # type: ignore[arg-type]
    )


def encode(doc: ProfileDocument) -> str:
    """Indented JSON with a trailing newline."""
    return msgspec.json.format(_encoder.encode(doc), indent=2).decode() + "\n"


def decode(data: bytes | str) -> ProfileDocument:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DocumentInvalid(f"not a Vigil profile document ({ProfileDocument.__struct_config__.tag}): {exc}") from exc


def imported(doc: ProfileDocument) -> list[tuple[EventType, LearnedBehaviour]]:
    """Every behaviour of the document as commands carry it (without its times), in event-type order."""
    return [
        (et, msgspec.structs.replace(b, first_seen=0, last_seen=0))
        for et, learned in doc.event_types.items()
        for b in learned.behaviours
    ]


def commands(
    doc: ProfileDocument,
    *,
    image_name: str,
    image_tag: str,
    partition: int,
    id_prefix: str,
    max_bytes: int,
) -> list[ImportBehaviour]:
    """The document as ImportBehaviour commands (ids ``<id_prefix>:<n>``), each under ``max_bytes``.

    Every command carries the version's first/last seen and states: the first one the learner
    applies creates the version, the others find it."""
    head = ImportBehaviour(
        id=f"{id_prefix}:{0:06d}",
        image_name=image_name,
        image_tag=image_tag,
        partition=partition,
        first_seen=doc.first_seen,
        last_seen=doc.last_seen,
        states={et: learned.state for et, learned in doc.event_types.items()},
        last_new={et: learned.last_new for et, learned in doc.event_types.items() if learned.last_new},
        source=f"{doc.image_name}:{doc.image_tag}",
        chunk=999_999,
        chunks=999_999,
    )
    room = max_bytes - len(_encoder.encode(head)) - 16  # 16: `"behaviours":{}` around the items
    groups = _pack(imported(doc), room)
    return [
        msgspec.structs.replace(head, id=f"{id_prefix}:{i}", behaviours=_by_type(group), chunk=i, chunks=len(groups))
        for i, group in enumerate(groups, start=1)
    ]


def _by_type(items: list[tuple[EventType, LearnedBehaviour]]) -> dict[EventType, list[LearnedBehaviour]]:
    out: dict[EventType, list[LearnedBehaviour]] = {}
    for et, b in items:
        out.setdefault(et, []).append(b)
    return out


def _pack(items: list[tuple[EventType, LearnedBehaviour]], room: int) -> list[list[tuple[EventType, LearnedBehaviour]]]:
    """Consecutive groups whose encoded items fit in ``room`` bytes (each item counted with a comma and,
    generously, its type's key, as if every item opened a new type); at least one group."""
    groups: list[list[tuple[EventType, LearnedBehaviour]]] = [[]]
    used = 0
    for et, b in items:
        size = len(_encoder.encode(b)) + len(et) + 6  # ,"<type>":[ … ]
        if groups[-1] and used + size > room:
            groups.append([])
            used = 0
        groups[-1].append((et, b))
        used += size
    return groups
