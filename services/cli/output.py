"""How the CLI prints: ``-o table`` for people, ``-o json`` (one object per line
for lists, one object for a single item) for scripts, with contract field names."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

# In a pipe or a CI log Rich would assume 80 columns and fold every table into narrow cells:
# there, tables are as wide as their content (up to PIPE_WIDTH); COLUMNS still wins when set.
PIPE_WIDTH = 512


def _width(stream: Any) -> int | None:
    return None if os.environ.get("COLUMNS") or stream.isatty() else PIPE_WIDTH


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, float):  # Duration and other float subclasses
        return float(obj)
    if isinstance(obj, int):  # Size
        return int(obj)
    if isinstance(obj, Enum):
        return obj.value
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


class Format(str, Enum):
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
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a value, never cuts part of it off
    for item in items:
        table.add_row(*(_cell(item.get(col)) for col in columns))
    console.print(table)


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
