"""docs/ stays true to the code: every file path, module and setting it names in
backticks exists (a renamed module or setting fails here, not in a reader's hands)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from services.runtime.settings import schema

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
TOP = ("contracts", "services", "collector", "bench", "tests", "bpf", "infra")

CODE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(rf"^(?:{'|'.join(TOP)})/[\w./-]*\w$")
DOTTED = re.compile(rf"^(?:{'|'.join(TOP[:5])})(?:\.\w+)+$")
SETTING = re.compile(r"^[a-z_]+(?:\.[a-z_0-9]+)+$")

KEYS = {key for key, _, _ in schema()}
SECTIONS = {key.split(".")[0] for key in KEYS if "." in key}


FILE = re.compile(r"\.(ya?ml|json|jsonl|md|py|c|h|txt|toml|log|zip|duckdb|parquet|sh|sock|url)$|\.svc\.")  # or a host


def _references() -> list[tuple[str, str]]:
    return [(doc.name, t.strip()) for doc in DOCS for t in CODE.findall(doc.read_text()) if t.strip()]


def _names(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """The references that look like ``pattern`` and are no file name."""
    return [(doc, t) for doc, t in _references() if pattern.match(t) and not FILE.search(t)]


def _module_or_attribute(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj: object = importlib.import_module(name)
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def _setting(token: str) -> bool:
    """A key, or a section of keys (``archive``, ``runtime_security_config.network``)."""
    return token in KEYS or any(key.startswith(token + ".") for key in KEYS)


def test_every_path_named_in_docs_exists() -> None:
    missing = [
        f"{doc}: {token}"
        for doc, token in _references()
        if PATH.match(token.split()[0]) and "*" not in token and "<" not in token
        and not (ROOT / token.split()[0].split(":")[0]).exists()
    ]  # fmt: skip
    assert missing == []


def _exists(token: str) -> bool:
    """A module or one of its attributes (also named without ``services.``), or a setting."""
    return _module_or_attribute(token) or _module_or_attribute(f"services.{token}") or _setting(token)


def test_every_module_named_in_docs_exists() -> None:
    missing = [f"{doc}: {t}" for doc, t in _names(DOTTED) if not _exists(t)]
    assert missing == []


def test_every_setting_named_in_docs_exists() -> None:
    named = [(doc, t) for doc, t in _names(SETTING) if t.split(".")[0] in SECTIONS]
    assert len(named) > 20  # the scan sees the docs' settings
    assert [f"{doc}: {t}" for doc, t in named if not _exists(t)] == []


@pytest.mark.parametrize("statement", ["contracts.upcast", "services/runtime/` is the only place"])
def test_statements_found_untrue_stay_gone(statement: str) -> None:
    assert all(statement not in doc.read_text() for doc in DOCS)


ROLE = re.compile(r":(?:mod|func|class|data|meth|attr):`~?((?:contracts|services|collector|bench)\.[\w.]+)`")


def test_every_module_a_docstring_cites_exists() -> None:
    """``:mod:`contracts.upcast``` and the like in the code's own docstrings."""
    cited = [
        (path.relative_to(ROOT), name)
        for package in TOP[:4]
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in ROLE.findall(path.read_text())
    ]
    assert len(cited) > 10
    assert [f"{path}: {name}" for path, name in cited if not _module_or_attribute(name)] == []
