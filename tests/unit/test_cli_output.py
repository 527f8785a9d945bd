"""The CLI's tables: on a narrow terminal a value wraps, it is never cut off
(four learner consumers must not all read ``profile-l…``); in a pipe or a CI
log a table is plain aligned columns, one line per row, whatever its width."""

from __future__ import annotations

import io
import re

from rich.console import Console

from services.cli import output

ITEMS = [
    {"stream": "EVENTS", "consumer": f"profile-learner-p{p}", "pending": 0, "ack_pending": 12345678, "ack_floor": 9}
    for p in range(4)
]
COLUMNS = ["stream", "consumer", "pending", "ack_pending", "ack_floor"]


def test_a_narrow_terminal_table_wraps_values_instead_of_cutting_them(monkeypatch) -> None:
    narrow = Console(width=60, record=True, force_terminal=True)
    monkeypatch.setattr(output, "console", narrow)
    output.rows(ITEMS, COLUMNS, output.Format.table)
    text = narrow.export_text()
    assert "…" not in text
    assert _column(text, 1) == "".join(f"profile-learner-p{p}" for p in range(4))
    assert _column(text, 3) == "12345678" * 4


def test_in_a_pipe_a_table_is_one_aligned_line_per_row_and_never_wraps(monkeypatch) -> None:
    sink = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=sink, width=40, force_terminal=False, soft_wrap=True))
    long_path = "/var/lib/vigil/" + "x" * 200 + "/profile-learner.log"
    output.rows([*ITEMS, {**ITEMS[0], "consumer": long_path}], COLUMNS, output.Format.table, title="consumers")
    lines = sink.getvalue().splitlines()
    assert lines[0] == "consumers"
    assert lines[1].split() == COLUMNS
    assert len(lines) == 2 + len(ITEMS) + 1  # title, header, one line per row
    assert [line.split()[1] for line in lines[2:]] == [f"profile-learner-p{p}" for p in range(4)] + [long_path]
    starts = {[m.start() for m in re.finditer(r"\S+", line)][2] for line in lines[1:]}
    assert len(starts) == 1  # the third column starts at the same offset on every line


def _column(text: str, index: int) -> str:
    """Column ``index`` of a rich table's body, its wrapped lines joined."""
    parts = [line.split("│")[index + 1].strip() for line in text.splitlines() if line.startswith("│")]
    return "".join(parts)
