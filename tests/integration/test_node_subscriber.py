"""Downstream subscribers against a real Vigil: drift goes through the real
anomaly-detector and throttler, Gatekeeper lines through the real intake socket, on a
real nats-server. Then

- examples/node-subscriber (nats.js) prints every message of vigil.alerts.out and
  vigil.decisions.> (a DecisionBatch as its decisions), payloads unchanged, and each
  printed Alert and Decision has every field docs/asyncapi.yaml marks required, with
  the JSON types its schema gives (the schema is read from the document, by the
  channel's address, so the document and what travels cannot part);
- examples/python-subscriber (FastStream) decodes every alert with the contracts;
- docs/subscribers.md shows both programs as they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from nats.js.errors import NotFoundError

from contracts import asyncapi
from contracts.codec import encode_batch
from contracts.decisions import batch_entries
from contracts.headers import MSG_ID_HEADER
from contracts.profiles import DriftBatch
from contracts.subjects import ALERTS, ALERTS_OUT, DECISIONS, drift_subject, subject_matches
from services.anomaly_detector.app import AnomalyDetector
from services.decision_intake.app import Intake
from services.decision_intake.client import gatekeeper_line, send_lines
from services.runtime.settings import Settings
from services.throttler.app import Throttler
from tests.support import alerts_and_decisions, make_settings, open_bus, running, wait_for
from tests.unit.test_anomaly_detector import exec_drift

ROOT = Path(__file__).resolve().parents[2]
NODE_SUBSCRIBER = ROOT / "examples" / "node-subscriber" / "subscriber.mjs"
PYTHON_SUBSCRIBER = ROOT / "examples" / "python-subscriber" / "subscriber.py"
SUBSCRIBERS_DOC = ROOT / "docs" / "subscribers.md"
NS = 1_000_000_000
T0 = 1_767_225_600 * NS
ENV = {"MAX_ALERT_PER_SEC": "2", "THROTTLE_SEC": "60"}  # 4 drifts in 40 ms: 2 alerts, then a threshold

Key = tuple[str, int, int | None]  # stream, stream sequence, index in a DecisionBatch


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (CI has it)")
    if not (NODE_SUBSCRIBER.parent / "node_modules" / "nats").is_dir():
        pytest.skip("examples/node-subscriber not installed: run `make node-deps`")
    return node


# --- a real Vigil produces alerts and decisions ---------------------------------------


async def _caught_up(settings: Settings) -> bool:
    """Every input of the detector and the throttler acked, so all their outputs are stored."""
    bus = await open_bus(settings)
    try:
        for spec in (*AnomalyDetector.consumers, *Throttler.consumers):
            try:
                info = await bus.js.consumer_info(spec.stream, spec.durable)
            except NotFoundError:  # not created yet
                return False
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await bus.close()


async def _produce(settings: Settings, sock: Path) -> None:
    drift = DriftBatch(
        drifts=[exec_drift(f"/usr/bin/tool{i}", T0 + i * 10_000_000, i) for i in range(4)], watermark=T0 + 50_000_000
    )
    bus = await open_bus(settings)
    intake = Intake(settings, bus, sock)
    await intake.start()
    try:
        async with bus.publisher() as pub:
            await pub.publish(drift_subject(0), encode_batch(drift), "drift-node-test")
            await pub.flush()
        answers = await send_lines(sock, [gatekeeper_line(i, prefix="node") for i in range(3)])
        assert all(a["ok"] for a in answers), answers
        async with running(AnomalyDetector(settings), settings), running(Throttler(settings), settings):
            await asyncio.sleep(0.2)
            await wait_for(lambda: _caught_up(settings), timeout=20)
    finally:
        await intake.stop()
        await bus.close()


@dataclass(frozen=True)
class Vigil:
    """A Vigil that has produced alerts and decisions, and what is on the bus."""

    settings: Settings
    expected: dict[Key, Any]  # what a subscriber of both subjects must print: payloads by key
    headers: list[tuple[str, str, dict[str, str]]]  # each message's subject, kind and headers

    def kinds(self) -> set[str]:
        return {message["kind"] for message in self.expected.values()}


async def _on_the_bus(settings: Settings) -> Vigil:
    out, decisions = await alerts_and_decisions(settings)
    expected: dict[Key, Any] = {}
    headers = [(m.subject, json.loads(m.data)["kind"], dict(m.headers or {})) for m in (*out, *decisions)]
    for stream, msgs in ((ALERTS, out), (DECISIONS, decisions)):
        for m in msgs:
            entries, seq = batch_entries(m.data), m.metadata.sequence.stream
            if entries is None:
                expected[(stream, seq, None)] = json.loads(m.data)
            else:
                expected.update({(stream, seq, i): json.loads(e) for i, e in enumerate(entries)})
    return Vigil(settings, expected, headers)


@pytest.fixture
def vigil(settings: Settings, tmp_path: Path) -> Vigil:
    settings = make_settings(Path(settings.data_dir), settings.nats.url, **ENV)
    asyncio.run(_produce(settings, tmp_path / "intake.sock"))
    return asyncio.run(_on_the_bus(settings))


# --- reading a subscriber's output ----------------------------------------------------


async def _read_lines(
    argv: list[str], done: Callable[[list[Any]], bool], env: dict[str, str] | None = None, timeout: float = 20.0
) -> list[Any]:
    """Run a subscriber until ``done(lines printed so far)``; its lines, JSON-decoded."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(lines):
                line = await proc.stdout.readline()
                if not line:
                    break
                lines.append(json.loads(line))
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await proc.communicate()
    assert done(lines), f"{len(lines)} lines: {lines[-3:]}; stderr: {err.decode()[-2000:]}"
    return lines


def _key(line: dict[str, Any]) -> Key:
    return (line["stream"], line["seq"], line.get("index"))


# --- what docs/asyncapi.yaml promises ---------------------------------------------------


def _messages_on(doc: dict[str, Any], subject: str) -> dict[str, dict[str, Any]]:
    """Each message the document lists on a subject, by its payload's kind tag."""
    by_kind: dict[str, dict[str, Any]] = {}
    for ch in doc["channels"].values():
        if subject_matches(re.sub(r"\{\w+\}", "*", ch["address"]), subject):
            for ref in ch["messages"].values():
                message = _resolve(doc, ref)
                for kind in _resolve(doc, message["payload"]).get("properties", {}).get("kind", {}).get("enum", []):
                    by_kind[kind] = message
    return by_kind


def _resolve(doc: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    section, name = ref["$ref"].split("/")[-2:]
    found: dict[str, Any] = doc["components"][section][name]
    return found


JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _check(doc: dict[str, Any], schema: dict[str, Any], message: dict[str, Any]) -> list[str]:
    """Required fields missing or of another JSON type than the schema's, then any other
    violation of the whole schema (jsonschema, refs resolved in the document)."""
    problems = [f"missing {name}" for name in schema.get("required", []) if name not in message]
    for name in schema.get("required", []):
        want = schema["properties"][name].get("type")
        if name in message and want is not None and not JSON_TYPES[want](message[name]):
            problems.append(f"{name}: {type(message[name]).__name__}, not {want}")
    root = {**schema, "components": doc["components"]}
    problems += [e.message for e in jsonschema.Draft202012Validator(root).iter_errors(message)]
    return problems


# --- the tests --------------------------------------------------------------------------


def test_node_subscriber_prints_what_the_asyncapi_document_promises(vigil: Vigil) -> None:
    assert {"alert.v1", "alert_threshold.v1", "decision.v1"} <= vigil.kinds(), vigil.kinds()
    assert any(index is not None for _, _, index in vigil.expected), "no DecisionBatch: nothing proves the split"

    argv = [_node(), str(NODE_SUBSCRIBER), "--server", vigil.settings.nats.url]
    lines = asyncio.run(_read_lines(argv, lambda ls: {_key(line) for line in ls} >= set(vigil.expected)))

    assert sorted(map(_key, lines), key=str) == sorted(vigil.expected, key=str)  # each once, nothing else
    for line in lines:
        assert line["message"] == vigil.expected[_key(line)], line  # as published: ints (ns) exact
    doc = yaml.safe_load(asyncapi.target().read_text())
    for line in lines:
        messages = _messages_on(doc, line["subject"])
        kind = line["message"]["kind"]
        assert kind in messages, f"{line['subject']}: the document lists no message of kind {kind}"
        assert _check(doc, _resolve(doc, messages[kind]["payload"]), line["message"]) == [], line


def test_every_message_carries_the_headers_the_document_promises(vigil: Vigil) -> None:
    doc = yaml.safe_load(asyncapi.target().read_text())
    for subject, kind, headers in vigil.headers:
        schema = _resolve(doc, _messages_on(doc, subject)[kind]["headers"])
        assert _check(doc, schema, headers) == [], (subject, kind, headers)
    assert all(MSG_ID_HEADER in headers for _, _, headers in vigil.headers)


def test_the_schema_check_catches_a_missing_or_mistyped_required_field() -> None:
    doc = yaml.safe_load(asyncapi.target().read_text())
    alert = _resolve(doc, _messages_on(doc, ALERTS_OUT)["alert.v1"]["payload"])
    sample = {"string": "x", "integer": 1}
    good = {name: sample.get(alert["properties"][name].get("type", ""), "x") for name in alert["required"]}
    missing = {k: v for k, v in good.items() if k != "time"}
    assert "missing time" in _check(doc, alert, missing)
    assert any(p.startswith("time: str") for p in _check(doc, alert, {**good, "time": "1"}))


def test_python_faststream_subscriber_decodes_every_alert(vigil: Vigil) -> None:
    alerts = [message for (stream, _, _), message in vigil.expected.items() if stream == ALERTS]
    env = {**os.environ, "NATS_URL": vigil.settings.nats.url}
    argv = [sys.executable, str(PYTHON_SUBSCRIBER)]
    printed = asyncio.run(_read_lines(argv, lambda lines: len(lines) >= len(alerts), env))
    assert sorted(printed, key=json.dumps) == sorted(alerts, key=json.dumps)


def _code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


@pytest.mark.parametrize("program", [NODE_SUBSCRIBER, PYTHON_SUBSCRIBER], ids=lambda p: p.parent.name)
def test_docs_show_the_subscribers_as_they_are(program: Path) -> None:
    assert program.read_text() in _code_blocks(SUBSCRIBERS_DOC.read_text()), f"copy {program} into {SUBSCRIBERS_DOC}"
