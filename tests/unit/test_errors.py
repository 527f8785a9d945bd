"""One root error: every exception class the project defines derives from
``contracts.errors.VigilError`` (keeping its built-in base), so a caller can
catch Vigil's errors as one."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from contracts.errors import VigilError
from services.runtime.errors import VigilError as RuntimeVigilError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "services", "collector", "bench")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "raise " in path.read_text() or "Error" in path.read_text():
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return names


def test_every_error_class_derives_from_the_root_and_keeps_its_builtin_base() -> None:
    found, strays = [], []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency (bcc, an exporter) missing here
            continue
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            found.append(f"{name}.{cls_name}")
            if not issubclass(cls, VigilError):
                strays.append(f"{name}.{cls_name}")
    assert strays == []
    assert len(found) >= 15  # the scan sees the project's errors
    from contracts.codec import ContractError
    from services.runtime.settings import SettingsError

    assert issubclass(ContractError, ValueError) and issubclass(SettingsError, ValueError)
    assert RuntimeVigilError is VigilError
