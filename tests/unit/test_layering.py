"""Where each thing lives: no service imports another service (shared vocabulary is
in ``contracts/``, shared plumbing in ``services/runtime``), and the runtime and the
contracts import no service. Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"runtime", "registry"}
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _services_imported(path: Path) -> set[str]:
    return {name.split(".")[1] for name in _imported(path) if name.startswith("services.") and name.count(".") >= 1}


def test_no_service_imports_another_service() -> None:
    crossing = [
        f"{path.relative_to(ROOT)} imports services.{other}"
        for service in SERVICES
        if service not in SHARED | {"cli"}
        for path in sorted((ROOT / "services" / service).rglob("*.py"))
        for other in _services_imported(path) - SHARED - {service}
    ]
    assert crossing == []


def test_the_runtime_and_the_contracts_import_no_service() -> None:
    crossing = [
        f"{path.relative_to(ROOT)} imports services.{other}"
        for path in sorted([*(ROOT / "services" / "runtime").rglob("*.py"), *(ROOT / "contracts").rglob("*.py")])
        for other in _services_imported(path) - {"runtime"}
    ]
    assert crossing == []
    assert "cli" in SERVICES and "profile_learner" in SERVICES  # the scan sees the packages
