"""`vigil workloads`: The workload registry: container id → image, tag, pod (add, list, remove)."""

from __future__ import annotations

import typer

NAME = "workloads"
app = typer.Typer(help="The workload registry: container id → image, tag, pod (add, list, remove).", no_args_is_help=True)
