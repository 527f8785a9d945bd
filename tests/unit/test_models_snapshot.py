"""Open modelling windows survive a restart: snapshot round trip; redelivered input folded again changes nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec

from contracts.events import ClockTicked
from services.audit_report_writer import model_files, modeling
from tests.unit.golden.behaviour import SEC, T0, replica_events
from tests.unit.test_modeling import model_json, window_request


def half_open() -> tuple[modeling.Windows, list[object]]:
    state = modeling.Windows()
    modeling.request(state, window_request())
    events = replica_events(T0)
    for event in events[:8]:
        modeling.advance(state, event)
    return state, [*events[8:], ClockTicked(time=T0 + 10 * SEC)]


def finish(state: modeling.Windows, rest: list[object]) -> str:
    closed = [c for e in rest for c in modeling.advance(state, e)]  # type: ignore[arg-type]
    assert len(closed) == 1 and closed[0].model is not None
    return model_json(closed[0].model)


def test_snapshot_round_trip_gives_the_same_model() -> None:
    state, rest = half_open()
    snap = msgspec.json.encode(model_files.snapshot_of(state))
    restored = model_files.windows_of(msgspec.json.decode(snap, type=model_files.WindowsSnapshot))
    assert msgspec.json.encode(model_files.snapshot_of(restored)) == snap
    assert finish(restored, rest) == finish(state, rest)


def test_redelivered_events_after_a_crash_change_nothing() -> None:
    state, rest = half_open()
    again = replica_events(T0)[:8]  # handled, not yet acked when the writer died: delivered again
    before = state.revision
    for event in again:
        modeling.advance(state, event)
    assert state.revision == before  # nothing new: no snapshot write either
    fresh, _ = half_open()
    assert finish(state, rest) == finish(fresh, rest)


def test_handler_persists_and_reloads_open_windows(tmp_path: Path) -> None:
    handler = model_files.ModelWindowsHandler(tmp_path, arch="x86_64")
    handler.state, _ = half_open()
    handler.commit()
    assert handler.snapshot_path.exists()
    reborn = model_files.ModelWindowsHandler(tmp_path, arch="x86_64")
    assert list(reborn.state.open) == ["req-1"] and reborn.state.seen == {"req-1"}
    handler.snapshot_path.write_text("{not json")
    assert model_files.ModelWindowsHandler(tmp_path).state.open == {}
    assert handler.snapshot_path.with_suffix(".corrupt").exists()


def test_without_an_open_window_the_watermark_comes_from_the_max_time_header(tmp_path: Path) -> None:
    """No window open: the writer takes the batch's event time from the publisher's
    header without decoding it; without the header (or a bad one) it decodes."""
    from contracts.codec import encode_batch
    from contracts.events import MAX_TIME_HEADER, EventBatch
    from services.runtime.service import Incoming

    events = replica_events(T0)
    body = encode_batch(EventBatch(node="n", boot="b", first_seq=0, events=events))
    top = max(e.time for e in events)

    def watermark(headers: dict[str, str], data: bytes = body) -> int:
        handler = model_files.ModelWindowsHandler(tmp_path / str(len(headers)) / headers.get(MAX_TIME_HEADER, "-"))
        handler.handle(Incoming(id="m", subject="vigil.events.0", stream="EVENTS", seq=1, data=data, headers=headers))
        return handler.state.watermark

    assert watermark({}) == top  # decoded
    assert watermark({MAX_TIME_HEADER: "not a number"}) == top  # decoded
    assert watermark({MAX_TIME_HEADER: str(top + 7)}, b"not even msgpack") == top + 7  # the header alone


def test_a_snapshot_from_before_per_partition_clocks_still_loads() -> None:
    """Written before windows knew their partition and the nodes they met: it loads, each window
    on its image's partition, and meets every node anew (the window goes on to the same model)."""
    state, rest = half_open()
    snap = msgspec.to_builtins(model_files.snapshot_of(state))
    for window in snap["open"]:
        del window["met"], window["pending"]
    del snap["watermarks"]
    old = msgspec.json.encode(snap)
    restored = model_files.windows_of(msgspec.json.decode(old, type=model_files.WindowsSnapshot), partitions=4)
    window = restored.open["req-1"]
    assert window.met == {} and window.partition == modeling.partition_of("nginx", 4)
    restored.partitions, window.partition = 1, 0  # the rest of the trace is fed as partition 0 here
    assert finish(restored, rest) == finish(state, rest)
