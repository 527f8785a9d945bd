"""`vigil models`: behaviour modelling windows (start, list).

``start IMAGE[:TAG] --duration 30m`` publishes a :class:`StartModeling`
request on the MODELS stream. The audit-report-writer opens the window at the
event time the request names (``--start``) or, by default, at the event time
it has reached, models what the selected containers do until event time passes
``start + duration``, then writes ``<data_dir>/models/<image>/<tag>/`` and
reports ``Completed`` (or ``Error``). ``--containers`` limits the model to
those container names; ``--opt-out NAME`` (or the vArmor-style annotation
``container.models.vigil.dev/NAME=unconfined`` via ``--annotation``) leaves a
container out.

``list`` folds the MODELS stream (requests and status events, read with an
ephemeral consumer) into one row per request.

:func:`read_subject` and :func:`learned_events` are also what ``vigil profiles
export`` uses to fold the PROFILES stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import msgspec
import typer

from contracts.headers import MSG_ID_HEADER
from contracts.models import OPT_OUT_PREFIX, OPT_OUT_VALUE, ModelMessage, ModelStatusChanged, StartModeling
from contracts.profiles import ProfileEvent
from contracts.subjects import MODELS, PROFILES, models_request_subject, profiles_subject
from contracts.workloads import parse_image
from services.cli.common import ConfigOpt, OutputOpt, fail, reach_bus, settings_or_exit
from services.cli.output import Format, console, rows
from services.runtime.errors import VigilError
from services.runtime.settings import Duration, Settings

NAME = "models"
app = typer.Typer(help="Behaviour modelling windows (start, list).", no_args_is_help=True)


_model_decoder = msgspec.json.Decoder(ModelMessage)
_profile_decoder = msgspec.json.Decoder(ProfileEvent)


def parse_start(value: str | None) -> int:
    """``--start``: event time in ns, or an ISO-8601 time; none = the writer's current event time (0)."""
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def annotations_of(annotation: list[str], opt_out: list[str]) -> dict[str, str]:
    out = {f"{OPT_OUT_PREFIX}{name}": OPT_OUT_VALUE for name in opt_out}
    for item in annotation:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--annotation {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


async def read_subject(settings: Settings, stream: str, subject: str) -> list[bytes]:
    """Every message stored on ``subject`` in ``stream``, oldest first (ephemeral consumer, no acks)."""
    from nats.js import api
    from nats.js.errors import NotFoundError

    bus = await reach_bus(settings, "vigil-models")
    try:
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0
        )
        try:
            sub = await bus.js.pull_subscribe(subject, stream=stream, config=config)
        except NotFoundError:
            return []  # the stream was never created: nothing stored
        out: list[bytes] = []
        try:
            while True:
                try:
                    batch = await sub.fetch(500, timeout=1.0)
                except Exception:  # noqa: BLE001 - nats TimeoutError: nothing more stored
                    return out
                out.extend(m.data for m in batch)
                if batch and batch[-1].metadata.num_pending == 0:
                    return out
        finally:
            await sub.unsubscribe()
    finally:
        await bus.close()


async def learned_events(settings: Settings, image_name: str) -> list[ProfileEvent]:
    """The PROFILES stream's events of one image (undecodable ones skipped)."""
    events: list[ProfileEvent] = []
    for data in await read_subject(settings, PROFILES, profiles_subject(image_name)):
        try:
            events.append(_profile_decoder.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return [e for e in events if e.image_name == image_name]


def fold_requests(messages: list[bytes]) -> list[dict[str, Any]]:
    """One row per request: its selector and its latest status."""
    rows_by_id: dict[str, dict[str, Any]] = {}
    for data in messages:
        try:
            msg = _model_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(msg, StartModeling):
            rows_by_id.setdefault(msg.id, {}).update(
                id=msg.id,
                image=f"{msg.image_name}:{msg.image_tag or '*'}",
                containers=",".join(msg.containers) or "*",
                duration=f"{msg.duration / 1e9:g}s",
                status=rows_by_id.get(msg.id, {}).get("status", "Requested"),
            )
        elif isinstance(msg, ModelStatusChanged):
            row = rows_by_id.setdefault(msg.request_id, {"id": msg.request_id, "image": msg.image_name})
            row.update(status=msg.status, reason=msg.reason, time=msg.time, files=msg.files, replicas=msg.replicas)
    return list(rows_by_id.values())


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except VigilError as exc:
        fail(str(exc))


@app.command("start")
def start(
    image: str = typer.Argument(..., help="IMAGE[:TAG] (no tag: every tag)"),
    duration: str = typer.Option("30m", "--duration", help="window length in event time: 90s, 30m, 1h"),
    containers: list[str] | None = typer.Option(None, "--containers", help="container names (repeatable)"),
    opt_out: list[str] | None = typer.Option(None, "--opt-out", help="container name to leave out (repeatable)"),
    annotation: list[str] | None = typer.Option(None, "--annotation", help="KEY=VALUE (repeatable)"),
    start_at: str | None = typer.Option(None, "--start", help="event time (ns or ISO); default: writer's now"),
    config: Path | None = ConfigOpt,
) -> None:
    """Request a modelling window for a workload."""
    settings = settings_or_exit(config)
    try:
        length = Duration.parse(duration)
        begin = parse_start(start_at)
    except ValueError as exc:
        fail(str(exc), 2)
    name, tag = parse_image(image, default_tag="")  # no tag: every tag
    req = StartModeling(
        id=f"model:{uuid.uuid4().hex[:12]}",
        time=begin,
        image_name=name,
        image_tag=tag,
        containers=sorted(containers or []),
        duration=length.ns,
        annotations=annotations_of(annotation or [], opt_out or []),
    )

    async def publish() -> None:
        from contracts.codec import encode_json

        bus = await reach_bus(settings, "vigil-models")
        try:
            await bus.ensure_streams()
            await bus.js.publish(models_request_subject(name), encode_json(req), headers={MSG_ID_HEADER: req.id})
        finally:
            await bus.close()

    _run(publish())
    console.print(f"requested {req.id}: {name}:{tag or '*'} for {duration} of event time")


@app.command("list")
def list_(config: Path | None = ConfigOpt, output: Format = OutputOpt) -> None:
    """Modelling requests and their status (Modeling, Completed, Error)."""
    settings = settings_or_exit(config)
    found = fold_requests(_run(read_subject(settings, MODELS, "vigil.models.>")))
    rows(found, ["id", "image", "containers", "duration", "status", "reason", "files"], output, title="models")
