"""The pure parts of bounded storage: headroom crossings and subject coverage."""

from __future__ import annotations

from nats.js import api as js_api

from services.runtime.storage import HeadroomState, StreamUsage, covers, crossing


def used(stored: int, limit: int = 1000) -> StreamUsage:
    return StreamUsage("EVENTS", stored, 10, limit, 0.0)


def test_each_crossing_of_the_threshold_is_one_decision_and_the_ids_count_them() -> None:
    state, out = HeadroomState(), []
    for stored in (100, 700, 850, 900, 850, 500, 300, 950, 990):  # headroom 0.9 … 0.01, threshold 0.2
        state, decision = crossing(state, used(stored), 0.2, now_ns=stored)
        if decision is not None:
            out.append((decision.id, decision.action, decision.source, decision.event_type))
    assert out == [
        ("storage:EVENTS:1", "warn", "vigil", "storage"),
        ("storage:EVENTS:2", "recovered", "vigil", "storage"),
        ("storage:EVENTS:3", "warn", "vigil", "storage"),
    ]
    assert state == HeadroomState(low=True, crossings=3, published=False, since=950)


def test_an_unbounded_stream_never_crosses() -> None:
    state, decision = crossing(HeadroomState(), used(10**12, limit=0), 0.2, now_ns=1)
    assert decision is None and state == HeadroomState()


def test_a_consumer_covers_the_subjects_its_filters_match() -> None:
    assert covers(js_api.ConsumerConfig(), "vigil.events.3")  # no filter: everything
    assert covers(js_api.ConsumerConfig(filter_subject="vigil.events.*"), "vigil.events.3")
    assert not covers(js_api.ConsumerConfig(filter_subject="vigil.events.2"), "vigil.events.3")
    assert covers(js_api.ConsumerConfig(filter_subjects=["vigil.events.1", "vigil.events.3"]), "vigil.events.3")
