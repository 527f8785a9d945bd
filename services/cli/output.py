"""How the CLI prints: ``-o table`` for people, ``-o json`` (one object per line
for lists, one object for a single item) for scripts, with contract field names."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum, StrEnum
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

# In a pipe or a CI log Rich would assume 80 columns and fold every line and table into
# narrow cells. There, lines are never wrapped (soft wrap) and tables are printed as plain
# aligned columns (:func:`rows`); PIPE_WIDTH only bounds what Rich lays out itself (a
# pretty-printed item). COLUMNS still wins when set. On a terminal Rich uses its width.
PIPE_WIDTH = 512


def _width(stream: Any) -> int | None:
    return None if os.environ.get("COLUMNS") or stream.isatty() else PIPE_WIDTH


def _console(stream: Any, stderr: bool = False) -> Console:
    return Console(stderr=stderr, width=_width(stream), soft_wrap=not stream.isatty())


console = _console(sys.stdout)
err_console = _console(sys.stderr, stderr=True)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, float):  # Duration and other float subclasses
        return float(obj)
    if isinstance(obj, int):  # Size
        return int(obj)
    if isinstance(obj, Enum):
        return obj.value
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


class Format(StrEnum):
    table = "table"
    json = "json"


def json_line(obj: Any) -> None:
    sys.stdout.buffer.write(_encoder.encode(obj) + b"\n")
    sys.stdout.flush()


def rows(items: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: Format, title: str | None = None) -> None:
    if fmt == Format.json:
        for item in items:
            json_line(item)
        return
    cells = [[_cell(item.get(col)) for col in columns] for item in items]
    if not console.is_terminal:
        for line in plain_table(cells, columns, title):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a value, never cuts part of it off
    for row in cells:
        table.add_row(*row)
    console.print(table)


def plain_table(cells: Sequence[Sequence[str]], columns: Sequence[str], title: str | None = None) -> list[str]:
    """A table for a pipe or a log: one line per row, columns aligned by padding, nothing
    wrapped or cut (``awk``/``cut`` read it; a value with spaces stays in its column)."""
    widths = [max([len(col), *(len(row[i]) for row in cells)]) for i, col in enumerate(columns)]
    lines = [title] if title else []
    for row in [list(columns), *cells]:
        lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    return lines


def item(obj: Any, fmt: Format) -> None:
    if fmt == Format.json:
        json_line(obj)
    else:
        console.print(msgspec.to_builtins(obj))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _encoder.encode(value).decode()
    return str(value)
