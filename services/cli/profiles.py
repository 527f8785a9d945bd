"""`vigil profiles`: Profiles learned per image (list, show, set-state, reset, export).

``list`` and ``show`` ask the running profile-learner (request/reply on
``vigil.query.profiles``) and fall back to its last snapshot when it does not
answer. ``set-state`` and ``reset`` publish commands on the COMMANDS stream;
the learner applies them at its current event time and records the change as
profile events.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import typer

from contracts import trace
from contracts.events import EVENT_TYPES
from contracts.profiles import PROFILE_STATES, Command, ResetProfile, SetState
from contracts.workloads import normalize_name
from services.cli.common import ConfigOpt, OutputOpt, settings_or_exit
from services.cli.output import Format, console, err_console, json_line, rows
from services.runtime.errors import VigilError
from services.runtime.settings import Settings

NAME = "profiles"
app = typer.Typer(help="Profiles learned per image (list, show, set-state, reset, export).", no_args_is_help=True)


async def _ask(settings: Settings, image: str | None) -> dict[str, Any] | None:
    """The learners' answer (each partition is asked on its own subject; a partition
    nobody answers for is read from its snapshot), or None when nothing answers."""
    import msgspec

    from contracts.subjects import partition_of, query_profiles_subject
    from services.profile_learner.app import load_snapshots, summaries
    from services.runtime.bus import connect

    try:
        bus = await connect(settings, start_embedded=False, name="vigil-profiles")
    except (VigilError, OSError, Exception):  # noqa: BLE001 - no bus: read the snapshots
        return None
    partitions = [partition_of(image, settings.nats.partitions)] if image else list(range(settings.nats.partitions))
    request = msgspec.json.encode({"image": image} if image else {})

    async def ask(p: int) -> dict[str, Any] | None:
        try:
            return msgspec.json.decode((await bus.nc.request(query_profiles_subject(p), request, timeout=3)).data)
        except Exception:  # noqa: BLE001 - no responder / timeout
            return None

    try:
        answers = await asyncio.gather(*(ask(p) for p in partitions))
    finally:
        await bus.close()
    if all(a is None for a in answers):
        return None
    if image is not None:
        return answers[0]
    snaps = load_snapshots(settings)
    missing = summaries([snaps[p] for p, a in zip(partitions, answers, strict=True) if a is None and p in snaps])
    live = [a for a in answers if a is not None]
    return {
        "profiles": [prof for a in [*live, missing] for prof in a["profiles"]],
        "over_cap_events": sum(a["over_cap_events"] for a in [*live, missing]),
    }


def _from_snapshot(settings: Settings, image: str | None) -> dict[str, Any] | None:
    from contracts.subjects import partition_of
    from services.profile_learner import core
    from services.profile_learner.app import load_snapshots, summaries

    snaps = load_snapshots(settings)
    if not snaps:
        return None
    if image is not None:
        snap = snaps.get(partition_of(image, settings.nats.partitions))
        prof = snap.state.profiles.get(image) if snap else None
        return {"profile": core.summary(prof) if prof else None}
    return summaries(list(snaps.values()))


def _read(settings: Settings, image: str | None) -> dict[str, Any]:
    image = normalize_name(image) if image else image  # docker.io/library/nginx is the nginx profile
    answer = asyncio.run(_ask(settings, image)) or _from_snapshot(settings, image)
    if answer is None:
        err_console.print("[red]error:[/red] no profile-learner answered and it left no snapshot; is Vigil running?")
        raise typer.Exit(1)
    return answer


def _states_text(states: dict[str, str]) -> str:
    return " ".join(f"{t}={states[t]}" for t in EVENT_TYPES if t in states)


@app.command("list")
def list_(config: Path | None = ConfigOpt, output: Format = OutputOpt) -> None:
    """One line per profile: image, versions, total size."""
    answer = _read(settings_or_exit(config), None)
    items = [
        {
            "image_name": p["image_name"],
            "versions": len(p["versions"]),
            "image_tags": ",".join(v["image_tag"] for v in p["versions"]),
            "size": sum(v["size"] for v in p["versions"]),
        }
        for p in answer.get("profiles", [])
    ]
    rows(items, ["image_name", "versions", "image_tags", "size"], output, title="profiles")


def _seconds(ns: int) -> str:
    return trace.format_time(ns)[:19] + "Z"  # 2026-01-01T00:33:20Z: a table column, not the record


@app.command()
def show(
    image: str = typer.Argument(..., help="image name"), config: Path | None = ConfigOpt, output: Format = OutputOpt
) -> None:
    """The profile with its versions: state per event type, sizes, first/last seen (event time;
    UTC in the table, ns since the epoch with -o json)."""
    prof = _read(settings_or_exit(config), image).get("profile")
    if prof is None:
        err_console.print(f"[red]error:[/red] no profile for image {image!r}")
        raise typer.Exit(1)
    if output == Format.json:
        json_line(prof)
        return
    console.print(f"[bold]{prof['image_name']}[/bold] (partition {prof.get('partition', 0)})")
    items = [
        {
            **v,
            "states": _states_text(v["states"]),
            "first_seen": _seconds(v["first_seen"]),
            "last_seen": _seconds(v["last_seen"]),
        }
        for v in prof["versions"]
    ]
    rows(items, ["image_tag", "states", "size", "first_seen", "last_seen"], output, title="versions")


def _publish(settings: Settings, cmd: Command) -> None:
    async def go() -> None:
        from contracts.codec import encode_json
        from contracts.subjects import commands_subject
        from services.runtime.bus import connect

        bus = await connect(settings, start_embedded=False, name="vigil-profiles")
        try:
            await bus.ensure_streams()
            await bus.js.publish(
                commands_subject(cmd.image_name, settings.nats.partitions),
                encode_json(cmd),
                headers={"Nats-Msg-Id": cmd.id},
            )
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    except VigilError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"sent {cmd.id}")


@app.command("set-state")
def set_state(
    image: str = typer.Argument(..., help="image name"),
    tag: str = typer.Argument(..., help="image tag (version)"),
    state: str = typer.Argument(..., help=" | ".join(PROFILE_STATES)),
    event_type: str | None = typer.Option(None, "--event-type", help=f"one of {', '.join(EVENT_TYPES)} (default: all)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Force a version's state (all event types, or one)."""
    if state not in PROFILE_STATES:
        err_console.print(f"[red]error:[/red] state must be one of {', '.join(PROFILE_STATES)}")
        raise typer.Exit(2)
    if event_type is not None and event_type not in EVENT_TYPES:
        err_console.print(f"[red]error:[/red] event type must be one of {', '.join(EVENT_TYPES)}")
        raise typer.Exit(2)
    cmd = SetState(
        id=f"cli:{uuid.uuid4()}", image_name=normalize_name(image), image_tag=tag, state=state, event_type=event_type
    )  # type: ignore[arg-type]
    _publish(settings_or_exit(config), cmd)


@app.command()
def reset(
    image: str = typer.Argument(..., help="image name"),
    tag: str | None = typer.Argument(None, help="image tag (default: the whole profile)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Forget a profile (or one version of it); it starts learning again from its next event."""
    _publish(
        settings_or_exit(config),
        ResetProfile(id=f"cli:{uuid.uuid4()}", image_name=normalize_name(image), image_tag=tag),
    )


# --- export (another engineer's command goes below) ---------------------------------------------


@app.command()
def export(
    image: str = typer.Argument(..., help="IMAGE[:TAG] (no tag: latest)"),
    fmt: str = typer.Option("model", "--format", "-f", help="model | apparmor | seccomp"),
    out: Path | None = typer.Option(None, "-o", "--out", help="write to FILE (default: stdout)"),
    config: Path | None = ConfigOpt,
) -> None:
    """A learned version as a behaviour model, an AppArmor profile or a seccomp profile.

    Folds the PROFILES stream (ephemeral consumer) into the version's learned
    behaviour; a reset or eviction forgets what came before it.
    """
    import sys

    from contracts.workloads import parse_image
    from services.audit_report_writer import model_files, modeling
    from services.cli.models import learned_events

    if fmt not in model_files.FILE_NAMES:
        err_console.print(f"[red]error:[/red] --format must be one of {', '.join(model_files.FILE_NAMES)}")
        raise typer.Exit(2)
    name, tag = parse_image(image)
    try:
        events = asyncio.run(learned_events(settings_or_exit(config), name))
    except VigilError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    behaviour = modeling.learned_behaviour(events)
    if not any(e.image_tag == tag for e in behaviour):
        err_console.print(f"[red]error:[/red] nothing learned for {name}:{tag}")
        raise typer.Exit(1)
    model = modeling.model_of_learned(behaviour, name, tag)
    if fmt == "seccomp" and not model.syscalls:
        err_console.print(
            f"[yellow]warning:[/yellow] no syscalls were learned for {name}:{tag} (syscall events off, or no "
            "kernel collector saw it): this profile allows no syscall at all"
        )
    text = model_files.render(model, fmt)  # type: ignore[arg-type]
    if out is None:
        sys.stdout.write(text)
        return
    model_files.write_text(out, text)
    err_console.print(f"wrote {out} ({fmt}, {name}:{tag})")
