"""The intake socket on a real nats-server: fuzzed lines are each answered with a
reason and counted, the intake stays up, and no good line is lost; socket
permissions; the intake is off unless configured."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
from itertools import count
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts.decisions import Decision, batch_entries
from contracts.intake import Accepted, normalise
from contracts.subjects import DECISIONS, INTAKE_DECISIONS
from services.decision_intake.app import Intake
from services.decision_intake.client import gatekeeper_line, send_lines
from services.runtime.settings import Settings
from tests.support import decisions_in, make_settings, open_bus, read_stream, service_env

MAX_LINE = 2048
_serial = count()

garbage = st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b" "))
json_value = st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.lists(st.integers(), max_size=3)
wrong_types = st.dictionaries(
    st.sampled_from(["timeStamp", "decisionId", "eventType", "constraintAction", "auditId", "input", "kind"]),
    json_value,
    min_size=1,
    max_size=6,
).map(msgspec.json.encode)
huge = st.integers(min_value=MAX_LINE + 1, max_value=MAX_LINE * 4).map(lambda n: b'{"decisionId":"' + b"x" * n + b'"}')
bad_utf8 = st.integers(0, 10**6).map(lambda i: gatekeeper_line(i).replace(b'"message":"', b'"message":"\xff\xfe', 1))
bad_line = st.one_of(garbage, wrong_types, huge, bad_utf8)


def _settings(tmp_path: Path, url: str) -> Settings:
    return make_settings(tmp_path / "vigil", url, DECISION_INTAKE_MAX_LINE_BYTES=str(MAX_LINE))


async def _roundtrip(
    settings: Settings, sock: Path, lines: list[bytes]
) -> tuple[list[dict[str, object]], dict[str, int], set[str]]:
    bus = await open_bus(settings)
    intake = Intake(settings, bus, sock)
    await intake.start()
    try:
        answers = await send_lines(sock, lines, chunk_lines=7)
        follow_up = await send_lines(sock, [gatekeeper_line(next(_serial), prefix="alive")])  # still serving
        assert follow_up[0]["ok"] is True
        intake_msgs = [m for m in await read_stream(bus, DECISIONS) if m.subject == INTAKE_DECISIONS]
        stored = [d for d in decisions_in(intake_msgs) if isinstance(d, Decision)]
        return answers, dict(intake.counters), {d.id for d in stored}
    finally:
        await intake.stop()
        await bus.close()


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), bad_line), min_size=1, max_size=25))
def test_fuzzed_lines_are_answered_counted_and_good_ones_kept(
    tmp_path: Path, nats_server, plan: list[tuple[bool, bytes]]
) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, nats_server.url)
    run = next(_serial)
    lines: list[bytes] = []
    for i, (good, bad) in enumerate(plan):
        lines.append(gatekeeper_line(i, prefix=f"good{run}") if good else bad)
    answers, counters, stored = asyncio.run(_roundtrip(settings, tmp_path / f"fuzz{run}.sock", lines))
    assert len(answers) == len(lines)
    expected_ok = [len(line) <= MAX_LINE and isinstance(normalise(line), Accepted) for line in lines]
    assert [a["ok"] for a in answers] == expected_ok
    for answer, ok in zip(answers, expected_ok, strict=True):
        if not ok:
            assert isinstance(answer["reason"], str) and answer["reason"]
    assert counters.get("rejected", 0) == expected_ok.count(False)
    good_ids = {str(a["id"]) for a in answers if a["ok"]}
    assert good_ids <= stored
    assert sum(1 for good, _ in plan if good) <= len(good_ids)


def test_lines_split_across_writes_and_over_long_lines(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, nats_server.url)

    async def scenario() -> list[bytes]:
        bus = await open_bus(settings)
        intake = Intake(settings, bus, tmp_path / "s.sock")
        await intake.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(intake.path))
            good = gatekeeper_line(1) + b"\n"
            for piece in (good[:10], good[10:], b"y" * (MAX_LINE * 3), b"yyy\n", b'{"bad"\n', gatekeeper_line(2)):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write_eof()  # the last line has no newline: still a line
            answers = [await reader.readline() for _ in range(4)]
            assert await reader.readline() == b""  # nothing more, and the connection closes cleanly
            writer.close()
            return answers
        finally:
            await intake.stop()
            await bus.close()

    answers = [msgspec.json.decode(a) for a in asyncio.run(scenario())]
    assert [a["ok"] for a in answers] == [True, False, False, True]
    assert answers[1]["reason"] == f"line longer than {MAX_LINE} bytes"
    assert answers[3]["id"] == "d-00000002"


def test_a_read_goes_out_as_one_batch_and_the_same_lines_again_are_stored_once(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    """The good lines of one read are one DecisionBatch message; the same lines re-sent
    the same way (a client that lost its answers) are answered ``duplicate`` and not stored
    again; a lone line is still its plain message."""
    settings = _settings(tmp_path, nats_server.url)
    lines = [gatekeeper_line(i, prefix="once") for i in range(50)]

    async def scenario() -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]], list]:  # type: ignore[type-arg]
        bus = await open_bus(settings)
        intake = Intake(settings, bus, tmp_path / "b.sock")
        await intake.start()
        try:
            first = await send_lines(intake.path, lines, chunk_lines=50)
            again = await send_lines(intake.path, lines, chunk_lines=50)
            alone = await send_lines(intake.path, [gatekeeper_line(99, prefix="alone")])
            return first, again, alone, await read_stream(bus, DECISIONS)
        finally:
            await intake.stop()
            await bus.close()

    first, again, alone, stored = asyncio.run(scenario())
    assert all(a["ok"] and "duplicate" not in a for a in first)
    assert all(a["ok"] and a["duplicate"] is True for a in again)
    assert alone[0]["ok"] and alone[0]["id"] == "alone-00000099"
    assert len(stored) == 2  # one batch of 50 (stored once), one plain message
    assert [d.id for d in decisions_in(stored)] == [f"once-{i:08d}" for i in range(50)] + ["alone-00000099"]
    assert batch_entries(stored[1].data) is None


def test_socket_mode_default_and_configured(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    async def mode_of(settings: Settings, sock: Path) -> int:
        bus = await open_bus(settings)
        intake = Intake(settings, bus, sock)
        await intake.start()
        try:
            return stat.S_IMODE(sock.stat().st_mode)
        finally:
            await intake.stop()
            await bus.close()

    default = make_settings(tmp_path / "a", nats_server.url)
    shared = make_settings(tmp_path / "b", nats_server.url, DECISION_INTAKE_SOCKET_MODE="0660")
    assert asyncio.run(mode_of(default, tmp_path / "a.sock")) == 0o600
    assert asyncio.run(mode_of(shared, tmp_path / "b.sock")) == 0o660
    (tmp_path / "stale.sock").touch()  # not a socket: refused rather than deleted
    try:
        asyncio.run(mode_of(default, tmp_path / "stale.sock"))
    except Exception as exc:  # noqa: BLE001
        assert "not a socket" in str(exc)
    else:
        raise AssertionError("a regular file at the socket path must not be replaced")


def test_intake_is_off_unless_configured(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "vigil", nats_server.url)
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "intake"],
        env=service_env(settings),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"intake is off" in proc.stderr
