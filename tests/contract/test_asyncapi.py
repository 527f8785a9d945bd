"""docs/asyncapi.yaml: current, complete, true to the services, and valid for the
AsyncAPI project's own parser (tools/asyncapi-check, installed by `make node-deps`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import asyncapi, reference, topology
from contracts.subjects import STREAMS, ConsumerSpec
from services import registry
from tests.support import make_settings

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "asyncapi-check"


def document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(asyncapi.target().read_text())
    return doc


def test_asyncapi_is_current() -> None:
    assert asyncapi.target().read_text() == asyncapi.render(), "run: python -m contracts.asyncapi"


def test_every_bus_message_type_is_a_message() -> None:
    bus_types = {tp.__name__ for subject, _, tps, _ in reference.CHANNELS if subject.startswith("vigil.") for tp in tps}
    assert bus_types <= set(document()["components"]["messages"])


def test_every_stream_has_a_channel() -> None:
    streams = {ch["x-jetstream-stream"] for ch in document()["channels"].values()}
    assert streams == {spec.name for spec in STREAMS}


def test_every_parameter_of_an_address_is_declared() -> None:
    for key, ch in document()["channels"].items():
        named = set(re.findall(r"\{(\w+)\}", ch["address"]))
        assert named == set(ch.get("parameters", {})), key


def _app_consumers(name: str, tmp_path: Path) -> set[ConsumerSpec]:
    app = registry.build(name, make_settings(tmp_path / name, "nats://127.0.0.1:1"))
    specs = set(app.consumers)
    if app.partitioned:
        specs |= {s for p in range(3) for s in app.partition_consumers(p)}
    return specs


@pytest.mark.parametrize("name", sorted(registry.SERVICES))
def test_topology_consumers_are_the_apps(name: str, tmp_path: Path) -> None:
    """contracts.topology (what the document shows) declares exactly the durables each app creates."""
    declared = topology.endpoints(name)
    plain = {c for c in declared.consumers if topology.PARTITION not in c.durable}
    templates = {s for p in range(3) for s in declared.consumers_of(p)}
    assert _app_consumers(name, tmp_path) == plain | templates


# --- the AsyncAPI project's parser ---------------------------------------------------


def _parser() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (CI has it): the AsyncAPI parser is a node package")
    if not (CHECKER / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.skip("tools/asyncapi-check not installed: run `make node-deps`")
    return [node, str(CHECKER / "validate.mjs")]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_parser(), str(path)], capture_output=True, text=True, timeout=60, check=False)


def test_the_asyncapi_parser_accepts_the_document() -> None:
    result = validate(asyncapi.target())
    assert result.returncode == 0, result.stdout + result.stderr
    assert " error " not in result.stdout


def _broken(tmp_path: Path, breaks: Any) -> Path:
    doc = document()
    breaks(doc)
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_asyncapi_parser_rejects_a_payload_ref_to_a_missing_schema(tmp_path: Path) -> None:
    def breaks(doc: dict[str, Any]) -> None:
        doc["components"]["messages"]["Alert"]["payload"] = {"$ref": "#/components/schemas/NoSuchAlert"}

    result = validate(_broken(tmp_path, breaks))
    assert result.returncode == 1, result.stdout
    assert "NoSuchAlert" in result.stdout and " error " in result.stdout


def test_the_asyncapi_parser_rejects_a_channel_address_of_the_wrong_type(tmp_path: Path) -> None:
    def breaks(doc: dict[str, Any]) -> None:
        doc["channels"]["throttler:vigil.alerts.out"]["address"] = 42

    result = validate(_broken(tmp_path, breaks))
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stdout.splitlines() if " error " in line]
    assert any("channels.throttler:vigil.alerts.out.address" in line for line in errors), result.stdout
