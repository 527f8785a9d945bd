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
