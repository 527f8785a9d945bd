"""`vigil profiles`: Profiles learned per image (list, show, set-state, reset, export, import).

``list`` and ``show`` ask the running profile-learner (request/reply on
``vigil.query.profiles``) and fall back to its last snapshot when it does not
answer. ``set-state``, ``reset`` and ``import`` publish commands on the COMMANDS stream;
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
from contracts.headers import MSG_ID_HEADER
from contracts.profiles import PROFILE_STATES, Command, ResetProfile, SetState
from contracts.workloads import normalize_name
from services.cli.common import ConfigOpt, OutputOpt, fail, reach_bus, settings_or_exit
from services.cli.output import Format, console, err_console, json_line, rows
from services.runtime.errors import VigilError
from services.runtime.settings import Settings

NAME = "profiles"
app = typer.Typer(
    help="Profiles learned per image (list, show, set-state, reset, export, import).", no_args_is_help=True
)


async def _ask(settings: Settings, image: str | None) -> dict[str, Any] | None:
    """The learners' answer (each partition is asked on its own subject; a partition
    nobody answers for is read from its snapshot), or None when nothing answers."""
    import msgspec

    from contracts.subjects import partition_of, query_profiles_subject
    from services.profile_learner.app import load_snapshots, summaries

    try:
        bus = await reach_bus(settings, "vigil-profiles")
    except (VigilError, OSError, Exception):  # noqa: BLE001 - no bus: read the snapshots
        return None
    partitions = [partition_of(image, settings.nats.partitions)] if image else list(range(settings.nats.partitions))
    request = msgspec.json.encode({"image": image} if image else {})

    async def ask(p: int) -> dict[str, Any] | None:
        try:
            reply = await bus.nc.request(query_profiles_subject(p), request, timeout=3)
            answer: dict[str, Any] = msgspec.json.decode(reply.data)
            return answer
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


def _answer(settings: Settings, image: str | None) -> dict[str, Any]:
    """The learner's answer (or its last snapshot's); VigilError when there is neither."""
    image = normalize_name(image) if image else image  # docker.io/library/nginx is the nginx profile
    answer = asyncio.run(_ask(settings, image)) or _from_snapshot(settings, image)
    if answer is None:
        raise VigilError("no profile-learner answered and it left no snapshot; is Vigil running?")
    return answer


def _read(settings: Settings, image: str | None) -> dict[str, Any]:
    try:
        return _answer(settings, image)
    except VigilError as exc:
        fail(str(exc))


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
        fail(f"no profile for image {image!r}")
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


def verdicts(settings: Settings, image: str, generators: list[str]) -> list[Any]:
    """Readiness of ``IMAGE[:TAG]`` (no tag: every version) for each generator, from the learner's summary."""
    from contracts.workloads import parse_image
    from services.profile_learner.readiness import verdict

    name, tag = parse_image(image, default_tag="")
    prof = _answer(settings, name).get("profile")
    if prof is None:
        raise VigilError(f"the profile-learner holds no profile for image {name!r}")
    versions = [v for v in prof["versions"] if not tag or v["image_tag"] == tag]
    if not versions:
        raise VigilError(f"the profile-learner holds no version {tag!r} of {name!r}")
    policy = settings.runtime_security_config.security_profile.readiness
    return [verdict(name, v, prof.get("event_time", 0), g, policy) for v in versions for g in generators]


@app.command()
def readiness(
    image: str = typer.Argument(..., help="IMAGE[:TAG] (no tag: every version)"),
    generator: str = typer.Option(
        "all", "--generator", "-g", help="seccomp | apparmor | networkpolicy | ciliumnetworkpolicy | all"
    ),
    config: Path | None = ConfigOpt,
    output: Format = OutputOpt,
) -> None:
    """Whether a learned version may be enforced, per generator, with the reason for each check
    (stable, quiet, starts, replicas, drift, loss: docs/models.md). Exits 1 unless all are ready."""
    from services.profile_learner.readiness import GENERATORS

    gens = list(GENERATORS) if generator == "all" else [generator]
    if any(g not in GENERATORS for g in gens):
        fail(f"--generator must be one of {', '.join(GENERATORS)} or all", 2)
    try:
        found = verdicts(settings_or_exit(config), image, gens)
    except VigilError as exc:
        fail(str(exc))
    if output == Format.json:
        for v in found:
            json_line({**v._asdict(), "checks": [c._asdict() for c in v.checks]})
    else:
        for v in found:
            mark = "[green]ready[/green]" if v.ready else "[red]not ready[/red]"
            console.print(f"[bold]{v.image_name}:{v.image_tag}[/bold] {v.generator}: {mark}")
            for c in v.checks:
                console.print(f"  {'ok ' if c.ok else 'NO '} {c.name:<8} {c.detail}", highlight=False)
    if not all(v.ready for v in found):
        raise typer.Exit(1)


def _publish(settings: Settings, cmd: Command) -> None:
    async def go() -> None:
        from contracts.codec import encode_json
        from contracts.subjects import commands_subject

        bus = await reach_bus(settings, "vigil-profiles")
        try:
            await bus.ensure_streams()
            await bus.js.publish(
                commands_subject(cmd.image_name, settings.nats.partitions),
                encode_json(cmd),
                headers={MSG_ID_HEADER: cmd.id},
            )
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    except VigilError as exc:
        fail(str(exc))
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
        fail(f"state must be one of {', '.join(PROFILE_STATES)}", 2)
    if event_type is not None and event_type not in EVENT_TYPES:
        fail(f"event type must be one of {', '.join(EVENT_TYPES)}", 2)
    cmd = SetState(
        id=f"cli:{uuid.uuid4()}", image_name=normalize_name(image), image_tag=tag, state=state, event_type=event_type
    )
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
    fmt: str = typer.Option(
        "model",
        "--format",
        "-f",
        help="model | apparmor | seccomp | networkpolicy | ciliumnetworkpolicy | json | dot (docs/models.md)",
    ),
    out: Path | None = typer.Option(None, "-o", "--out", help="write to FILE (default: stdout)"),
    mode: str = typer.Option(
        "enforce", "--mode", help="enforce | complain (seccomp SCMP_ACT_LOG, AppArmor complain: log, do not deny)"
    ),
    force: bool = typer.Option(False, "--force", help="export for enforcement even when the version is not ready"),
    config: Path | None = ConfigOpt,
) -> None:
    """A learned version as a behaviour model, an AppArmor or seccomp profile,
    a Kubernetes NetworkPolicy or CiliumNetworkPolicy (egress), a portable JSON
    document (for `vigil profiles import`) or a DOT graph of its process lineage.

    Folds the PROFILES stream (ephemeral consumer) into the version's learned
    behaviour; a reset or eviction forgets what came before it. The policies
    select pods by the labels the workload registry holds for the image's
    containers (a placeholder to edit when it holds none, said on stderr).
    SVG: `vigil profiles export IMG:TAG --format dot | dot -Tsvg > p.svg`.

    What enforces (seccomp, apparmor, the policies) is refused while the version
    is not ready for it (`vigil profiles readiness`) unless --force; a
    complain-mode profile (--mode complain) can always be exported.
    """
    import sys

    from contracts.workloads import parse_image
    from services.audit_report_writer import model_files

    if fmt not in model_files.EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(model_files.EXPORT_FORMATS)}", 2)
    settings = settings_or_exit(config)
    name, tag = parse_image(image)
    _ready_or_exit(settings, f"{name}:{tag}", fmt, mode, force)
    model, behaviour = _learned_version(settings, name, tag)
    if fmt == "seccomp" and not model.syscalls:
        err_console.print(
            f"[yellow]warning:[/yellow] no syscalls were learned for {name}:{tag} (syscall events off, or no "
            "kernel collector saw it): this profile allows no syscall at all"
        )
    text = model_files.render_export(_learned(settings, model, behaviour, fmt), fmt, complain=mode == "complain")
    if out is None:
        sys.stdout.write(text)
        return
    model_files.write_text(out, text)
    err_console.print(f"wrote {out} ({fmt}, {name}:{tag})")


def _learned_version(settings: Settings, name: str, tag: str) -> tuple[Any, list[Any]]:
    """The model of what ``name:tag`` learned (the PROFILES stream folded) and that
    version's behaviour events; exits 1 when nothing was learned or the bus fails."""
    from services.audit_report_writer import modeling
    from services.cli.models import learned_events

    try:
        events = asyncio.run(learned_events(settings, name))
    except VigilError as exc:
        fail(str(exc))
    behaviour = modeling.learned_behaviour(events)
    if not any(e.image_tag == tag for e in behaviour):
        fail(f"nothing learned for {name}:{tag}")
    return modeling.model_of_learned(behaviour, name, tag), [e for e in behaviour if e.image_tag == tag]


COMPLAIN_FORMATS = ("seccomp", "apparmor")


def _ready_or_exit(settings: Settings, image: str, fmt: str, mode: str, force: bool) -> None:
    """Refuse an enforcing export of a version that is not ready for that generator."""
    from services.profile_learner.readiness import GENERATORS

    if mode not in ("enforce", "complain"):
        fail("--mode must be enforce or complain", 2)
    if mode == "complain":
        if fmt not in COMPLAIN_FORMATS:
            fail(f"--mode complain exists for {' and '.join(COMPLAIN_FORMATS)} only", 2)
        return
    if fmt not in GENERATORS:
        return  # a model, a document, a graph: nothing is enforced
    try:
        [verdict] = verdicts(settings, image, [fmt])
    except VigilError as exc:
        verdict, reasons = None, f"readiness unknown: {exc}"
    if verdict is not None:
        if verdict.ready:
            return
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in verdict.failed())
    if force:
        err_console.print(f"[yellow]warning:[/yellow] {image} is not ready for {fmt} ({reasons}); exported (--force)")
        return
    err_console.print(
        f"[red]error:[/red] {image} is not ready for {fmt}: {reasons}\n"
        f"  see `vigil profiles readiness {image}`; export --mode complain to observe first, or --force"
    )
    raise typer.Exit(1)


def _learned(settings: Settings, model: Any, behaviours: list[Any], fmt: str) -> Any:
    """What the format needs besides the model: the pods' labels (policies), the learner's summary (json)."""
    from services.audit_report_writer import model_files

    depth = settings.runtime_security_config.security_profile.dns_match_max_depth
    selection = _selection(settings, model) if fmt in ("networkpolicy", "ciliumnetworkpolicy") else None
    document = _document(settings, model, behaviours, depth) if fmt == "json" else None
    return model_files.Learned(
        model=model, behaviours=tuple(behaviours), document=document, selection=selection, dns_depth=depth
    )


def _selection(settings: Settings, model: Any) -> Any:
    from services.audit_report_writer import netpol
    from services.cli.workloads import registered_workloads

    image = f"{model.image_name}:{model.image_tag}"
    try:
        workloads = asyncio.run(registered_workloads(settings))
    except (VigilError, OSError) as exc:
        err_console.print(f"[yellow]warning:[/yellow] the workload registry could not be read ({exc})")
        workloads = []
    sel = netpol.selection(model.image_name, model.image_tag, workloads)
    if sel.placeholder:
        err_console.print(
            f"[yellow]warning:[/yellow] no pod labels known for {image} ({sel.containers} registered containers): "
            f"the selector {netpol.PLACEHOLDER_KEY}={sel.labels[netpol.PLACEHOLDER_KEY]} is a placeholder, edit it"
        )
    else:
        labels = ",".join(f"{k}={v}" for k, v in sel.labels.items())
        err_console.print(f"selector {labels}: the labels common to {sel.containers} registered containers of {image}")
    return sel


def _document(settings: Settings, model: Any, behaviours: list[Any], depth: int) -> Any:
    from services.audit_report_writer import portable

    prof = _read(settings, model.image_name).get("profile") or {}
    version = next((v for v in prof.get("versions", []) if v["image_tag"] == model.image_tag), None)
    if version is None:
        fail(f"the learner holds no version {model.image_tag} of {model.image_name}")
    return portable.document(
        behaviours, version, image_name=model.image_name, event_time=prof.get("event_time", 0), dns_depth=depth
    )


IMPORT_MAX_BYTES = 256 * 1024  # per command; far below NATS's 1 MiB default max payload


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="a profile document (`vigil profiles export IMAGE:TAG --format json`)"),
    as_: str | None = typer.Option(None, "--as", help="IMAGE:TAG to import into (default: the document's)"),
    config: Path | None = ConfigOpt,
) -> None:
    """Add a profile document's behaviour to a version (union: nothing is removed).

    Publishes ImportBehaviour commands on COMMANDS (several for a large
    document); the learner applies them like set-state and records what it
    inserted as profile events, so a replay reproduces the import. A version
    it does not hold yet takes the document's first/last seen and states; a
    version it holds keeps its own.
    """
    from contracts.subjects import partition_of
    from contracts.workloads import parse_image
    from services.audit_report_writer import portable

    try:
        doc = portable.decode(file.read_bytes())
    except (OSError, portable.DocumentInvalid) as exc:
        fail(f"{file}: {exc}", 2)
    name, tag = parse_image(as_) if as_ else (normalize_name(doc.image_name), doc.image_tag)
    settings = settings_or_exit(config)
    prefix = f"cli:import:{uuid.uuid4()}"

    def build(max_bytes: int) -> list[Any]:
        partition = partition_of(name, settings.nats.partitions)
        return portable.commands(
            doc, image_name=name, image_tag=tag, partition=partition, id_prefix=prefix, max_bytes=max_bytes
        )

    sent = _publish_many(settings, build)
    count = sum(len(c.behaviours) for c in sent)
    console.print(f"sent {len(sent)} import command(s) for {name}:{tag}: {count} behaviours ({prefix})")


def _publish_many(settings: Settings, build: Any) -> list[Any]:
    """Publish the commands ``build(max_bytes)`` returns, in order, each with its Nats-Msg-Id."""

    async def go() -> list[Any]:
        from contracts.codec import encode_json
        from contracts.subjects import commands_subject

        bus = await reach_bus(settings, "vigil-profiles")
        try:
            await bus.ensure_streams()
            cmds = build(min(IMPORT_MAX_BYTES, bus.nc.max_payload // 4))
            for cmd in cmds:
                subject = commands_subject(cmd.image_name, settings.nats.partitions)
                await bus.js.publish(subject, encode_json(cmd), headers={MSG_ID_HEADER: cmd.id})
            return list(cmds)
        finally:
            await bus.close()

    try:
        return asyncio.run(go())
    except VigilError as exc:
        fail(str(exc))
