"""The JSONL trace format of DESIGN.md: one raw event per line.

Same fields as the raw event contracts, except that ``kind`` is the bare kind
(``exec``, not the versioned tag ``exec.v1``) and ``time`` is RFC3339 UTC with
microseconds (an integer is read as nanoseconds). Used by ``vigil collect
--from``, exports and tests. Pure: no I/O beyond the iterables it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts.errors import VigilError
from contracts.events import RAW_EVENT_TYPES, RawEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_TO_TAG = {str(t.__struct_config__.tag).split(".v")[0]: t.__struct_config__.tag for t in RAW_EVENT_TYPES}
_TAG_TO_KIND = {tag: kind for kind, tag in _KIND_TO_TAG.items()}
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


class TraceError(VigilError, ValueError):
    """A trace line that is not a valid raw event; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse_time(value: str | int) -> int:
    """RFC3339 (``Z`` or offset) → nanoseconds since the epoch; ints pass through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"time must be an RFC3339 string, got {type(value).__name__}")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MICROSECOND * 1000


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
# Event times the bus carries (msgpack int64, years 1677..2262), the lower end a whole microsecond so what is
# written (to the microsecond) reads back in range.
_MIN_NS, _MAX_NS = -(2**63 // 1000 * 1000), 2**63 - 1


def format_time(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def from_obj(obj: Any) -> RawEvent:
    """A decoded JSON object in trace shape → a raw event contract."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    kind = obj.get("kind")
    tag = _KIND_TO_TAG.get(kind) if isinstance(kind, str) else None
    if tag is None:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_KIND_TO_TAG)}")
    if "time" not in obj:
        raise ValueError("missing time")
    time = parse_time(obj["time"])
    if not _MIN_NS <= time <= _MAX_NS:
        raise ValueError(f"time out of range: {obj['time']!r}")
    fields = dict(obj, kind=tag, time=time)
    event: RawEvent = msgspec.convert(fields, RawEvent)
    return event


def to_obj(event: RawEvent) -> dict[str, Any]:
    obj: dict[str, Any] = msgspec.to_builtins(event)
    obj["kind"] = _TAG_TO_KIND[obj["kind"]]
    obj["time"] = format_time(event.time)
    return obj


def decode_line(line: bytes | str, lineno: int = 1) -> RawEvent:
    try:
        return from_obj(_json_decode(line))
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, OverflowError) as exc:
        raise TraceError(lineno, str(exc)) from exc


def encode_line(event: RawEvent) -> bytes:
    return _json_encode(to_obj(event)) + b"\n"


def read(lines: Iterable[bytes | str]) -> Iterator[RawEvent]:
    """Decode a trace; blank lines and ``#`` comments are skipped; errors name the line."""
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped[:1] in ("#", b"#"):
            continue
        yield decode_line(stripped, lineno)


def write(events: Iterable[RawEvent]) -> Iterator[bytes]:
    for event in events:
        yield encode_line(event)
