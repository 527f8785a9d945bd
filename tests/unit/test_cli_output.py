"""The CLI's tables: on a narrow terminal a value wraps, it is never cut off
(four learner consumers must not all read ``profile-l…``)."""

from __future__ import annotations

from rich.console import Console

from services.cli import output


def test_a_narrow_table_wraps_values_instead_of_cutting_them(monkeypatch) -> None:
    narrow = Console(width=60, record=True, force_terminal=False)
    monkeypatch.setattr(output, "console", narrow)
    items = [
        {"stream": "EVENTS", "consumer": f"profile-learner-p{p}", "pending": 0, "ack_pending": 12345678, "ack_floor": 9}
        for p in range(4)
    ]
    output.rows(items, ["stream", "consumer", "pending", "ack_pending", "ack_floor"], output.Format.table)
    text = narrow.export_text()
    assert "…" not in text
    assert _column(text, 1) == "".join(f"profile-learner-p{p}" for p in range(4))
    assert _column(text, 3) == "12345678" * 4


def _column(text: str, index: int) -> str:
    """Column ``index`` of a rich table's body, its wrapped lines joined."""
    parts = [line.split("│")[index + 1].strip() for line in text.splitlines() if line.startswith("│")]
    return "".join(parts)
