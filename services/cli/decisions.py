"""`vigil decisions`: The decision archive (sql, export).

Queries go to the running decision-log-archiver over NATS (DuckDB lets no
second process open a file that has a writer); with no archiver running they
run on the archive file directly, read-only. Only reads are accepted.
"""

from __future__ import annotations

import csv
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from services.cli.common import ConfigOpt, fail

NAME = "decisions"
app = typer.Typer(help="The decision archive (sql, export).", no_args_is_help=True)


class SqlFormat(str, Enum):  # noqa: UP042 - typer's choices, like services.cli.output.Format
    table = "table"
    json = "json"
    csv = "csv"


def _run(request: Any, config: Path | None) -> Any:
    from services.cli.common import settings_or_exit
    from services.cli.output import err_console
    from services.decision_log_archiver import client, query
    from services.runtime.errors import VigilError

    settings = settings_or_exit(config)
    try:
        return client.run(settings, request)[0]
    except query.QueryRefused as exc:
        err_console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(3) from exc
    except VigilError as exc:
        fail(str(exc))


@app.command("sql")
def sql(
    statement: str = typer.Argument(
        ..., help='a read-only statement, e.g. "SELECT action, count(*) FROM decisions GROUP BY 1"'
    ),
    output: SqlFormat = typer.Option(SqlFormat.table, "--output", "-o", help="table, json (one object per row) or csv"),
    max_rows: int = typer.Option(100_000, "--max-rows", help="stop after this many rows"),
    config: Path | None = ConfigOpt,
) -> None:
    """Run read-only SQL on the archive (tables: decisions, positions), also while it is written."""
    from services.cli.output import Format, err_console, json_line, rows
    from services.decision_log_archiver import query

    result = _run(query.QueryRequest(sql=statement, max_rows=max_rows), config)
    items = [dict(zip(result.columns, row, strict=False)) for row in result.rows]
    if output == SqlFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output == SqlFormat.json:
        for item in items:
            json_line(item)
    else:
        rows(items, result.columns, Format.table)
    if result.truncated:
        err_console.print(f"[yellow]truncated at {max_rows} rows[/yellow]")


@app.command("export")
def export(
    parquet: Path = typer.Option(..., "--parquet", help="directory for day-partitioned Parquet (day=YYYY-MM-DD/)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Write the whole archive as Parquet, one directory per UTC day (one consistent snapshot)."""
    from services.cli.output import console
    from services.decision_log_archiver import query

    parquet.mkdir(parents=True, exist_ok=True)
    result = _run(query.QueryRequest(export=str(parquet.resolve())), config)
    total, days, where = result.rows[0]
    console.print(f"exported {total} decisions in {days} day partitions to {where}", highlight=False)
