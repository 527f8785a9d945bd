"""The runner's check that a stateful app's deliveries come in order (consumer sequence 1, 2, ...)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.runtime.service import _in_order


def delivered(*consumer_seqs: int) -> list[Any]:
    return [SimpleNamespace(metadata=SimpleNamespace(sequence=SimpleNamespace(consumer=c))) for c in consumer_seqs]


def test_the_in_order_prefix_ends_at_the_first_jump() -> None:
    assert _in_order(delivered(1, 2, 3), 1) == 3
    assert _in_order(delivered(5, 6, 8, 9), 5) == 2  # delivery 7 never arrived: 8 and 9 are out of order
    assert _in_order(delivered(2, 3), 1) == 0  # the first one is already late
    assert _in_order([], 4) == 0
