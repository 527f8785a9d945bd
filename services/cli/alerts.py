"""`vigil alerts`: anomaly alerts as downstream subscribers see them.

``tail`` follows new messages on ``vigil.alerts.out`` (a plain NATS
subscription through faststream, as a downstream tool would write it: nothing
is stored, no consumer left behind); ``list --since``
reads what the ALERTS stream stored on that subject in the last DURATION (an
ephemeral consumer starting at that wall-clock store time: which messages to read
is a question about the stream) and states the span of the alerts' own event
time (what they are about: a replayed trace's alerts are from when it was recorded). Both filter by
container, image and rule, and print ``-o table`` lines or ``-o json`` (one
contract object per line, AlertThreshold included).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import typer

from contracts.alerts import Alert, AlertMessage, AlertThreshold, alert_decoder
from contracts.subjects import ALERTS, ALERTS_OUT, ALERTS_RAW
from services.cli.common import ConfigOpt, OutputOpt, fail, reach_bus, settings_or_exit
from services.cli.output import Format, console, err_console, json_line
from services.runtime.errors import VigilError
from services.runtime.settings import Duration, Settings

NAME = "alerts"
app = typer.Typer(help="Anomaly alerts (tail, list).", no_args_is_help=True)

ContainerOpt = typer.Option(None, "--container", help="container id (or name)")
ImageOpt = typer.Option(None, "--image", help="image name, or name:tag")
RuleOpt = typer.Option(None, "--rule", help="rule id (anomaly_detection; AlertThreshold for throttling alerts)")
RawOpt = typer.Option(False, "--raw", help="read vigil.alerts.raw (before throttling) instead of vigil.alerts.out")


class Filter(msgspec.Struct, frozen=True):
    container: str | None = None
    image: str | None = None
    rule: str | None = None

    def __call__(self, alert: AlertMessage) -> bool:
        c = alert.container
        if self.container and self.container not in (c.id, c.name):
            return False
        if self.image and self.image not in (c.image_name, f"{c.image_name}:{c.image_tag}"):
            return False
        return not self.rule or self.rule == rule_of(alert)


def rule_of(alert: AlertMessage) -> str:
    return alert.rule_id if isinstance(alert, Alert) else (alert.rule_id or alert.Operation)


def table_line(alert: AlertMessage) -> str:
    when = dt.datetime.fromtimestamp(alert.time / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    c = alert.container
    where = f"{c.namespace}/{c.pod}/{c.name or c.id}" if c.pod else c.id
    image = f"{c.image_name}:{c.image_tag}"
    if isinstance(alert, AlertThreshold):
        limit, interval = alert.MaxAlertsPerSec, alert.DroppingAlertsInterval
        return f"{when}  {where}  {image}  [yellow]AlertThreshold[/yellow] over {limit}/s: dropping for {interval}s"
    return f"{when}  {where}  {image}  [bold]{alert.severity}[/bold]  {alert.rule_id}  {alert.title}"


def emit(alert: AlertMessage, fmt: Format) -> None:
    if fmt == Format.json:
        json_line(alert)
    else:
        console.print(table_line(alert), highlight=False, soft_wrap=True)


@app.command("tail")
def tail(
    container: str | None = ContainerOpt,
    image: str | None = ImageOpt,
    rule: str | None = RuleOpt,
    output: Format = OutputOpt,
    raw: bool = RawOpt,
    count: int = typer.Option(0, "--count", "-n", help="stop after this many alerts (0: follow until Ctrl-C)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Follow new alerts as they are published."""
    settings = settings_or_exit(config)
    try:
        asyncio.run(_tail(settings, ALERTS_RAW if raw else ALERTS_OUT, Filter(container, image, rule), output, count))
    except KeyboardInterrupt:
        pass
    except VigilError as exc:
        fail(str(exc))


async def _tail(settings: Settings, subject: str, keep: Filter, fmt: Format, count: int) -> None:
    """A downstream subscriber, written the way one in any other tool would be:
    faststream's NATS broker, a per-message handler, our JSON contracts."""
    from faststream.nats import NatsBroker, NatsMessage

    from services.runtime.bus import resolve_url

    url = resolve_url(settings)
    if url is None:
        raise VigilError("Vigil is not running: set VIGIL_NATS_URL or start it with `vigil up`")
    options: dict[str, Any] = {"logger": None, "max_reconnect_attempts": -1}
    if settings.nats.credentials:
        options["user_credentials"] = settings.nats.credentials
    broker = NatsBroker(url.split(","), **options)
    done = asyncio.Event()
    shown = 0

    @broker.subscriber(subject)
    async def on_alert(msg: NatsMessage) -> None:
        nonlocal shown
        try:
            alert = alert_decoder.decode(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not an alert: tail shows alerts only
        if keep(alert):
            emit(alert, fmt)
            shown += 1
            if count and shown >= count:
                done.set()

    await broker.start()
    try:
        err_console.print(f"following {subject} (Ctrl-C to stop)")
        await done.wait()
    finally:
        await broker.stop()


@app.command("list")
def list_(
    since: str = typer.Option("1h", "--since", help="how far back (store time): 90s, 15m, 1h, 2d"),
    container: str | None = ContainerOpt,
    image: str | None = ImageOpt,
    rule: str | None = RuleOpt,
    output: Format = OutputOpt,
    raw: bool = RawOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Alerts stored in the last DURATION, oldest first."""
    settings = settings_or_exit(config)
    try:
        window = Duration.parse(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=float(window))
    try:
        alerts = asyncio.run(_stored(settings, ALERTS_RAW if raw else ALERTS_OUT, start))
    except (VigilError, nats.errors.Error) as exc:
        fail(str(exc))
    shown = [a for a in alerts if Filter(container, image, rule)(a)]
    for alert in shown:
        emit(alert, output)
    if output == Format.table:
        err_console.print(summary(shown, since), highlight=False)


def summary(alerts: list[AlertMessage], since: str) -> str:
    """How many alerts, over which span of *event* time (the alerts' own times: a replayed
    trace's alerts are from when it was recorded), among those stored in the last ``since``."""
    if not alerts:
        return f"0 alerts stored in the last {since}"
    first, last = min(a.time for a in alerts), max(a.time for a in alerts)
    return f"{len(alerts)} alerts, event time {_utc(first)} to {_utc(last)} (stored in the last {since})"


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _stored(settings: Settings, subject: str, start: dt.datetime) -> list[AlertMessage]:
    """The alerts the ALERTS stream stored on ``subject`` since ``start`` (store time),
    up to what was stored when the read began."""
    from nats.js import api

    from services.runtime.bus import unsubscribe_quietly
    from services.runtime.fetch import batches_until

    bus = await reach_bus(settings, "vigil-alerts-list")
    try:
        end = (await bus.js.stream_info(ALERTS)).state.last_seq
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
        )
        sub = await bus.js.pull_subscribe(subject, stream=ALERTS, config=config)
        try:
            return [alert async for msgs in batches_until(sub, end) for alert in _decoded(msgs)]
        finally:
            await unsubscribe_quietly(sub)
    finally:
        await bus.close()


def _decoded(msgs: list[Any]) -> Iterator[AlertMessage]:
    for msg in msgs:
        try:
            yield alert_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
