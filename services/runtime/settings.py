"""Settings: one YAML file, every key overridable by a ``VIGIL_…`` environment
variable, read once at the edge into a frozen object.

Key names follow the seeds where they have one (Datadog's
``runtime_security_config.*``, KubeArmor's ``alert_throttling``,
``max_alert_per_sec``, ``throttle_sec``). The environment name of a key is
``VIGIL_`` + the dotted path upper-cased with ``.`` → ``_``
(``runtime_security_config.network.enabled`` →
``VIGIL_RUNTIME_SECURITY_CONFIG_NETWORK_ENABLED``). Durations accept seconds
or ``500ms``/``90s``/``15m``/``1h``/``2d``. A bad value or an unknown key fails
with :class:`SettingsError` naming the key.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import msgspec
import yaml
from msgspec import Struct, field

from contracts.errors import VigilError


class SettingsError(VigilError, ValueError):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key {key}: {reason}")
        self.key = key


class Duration(float):
    """Seconds. Written as a number or as ``15m``, ``900s``, ``500ms``, ``1h``, ``2d``."""

    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError("expected a duration")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError("a duration cannot be negative")
            return cls(value)
        if isinstance(value, str) and (m := cls._RE.match(value)):
            return cls(float(m.group(1)) * cls._UNITS[m.group(2) or "s"])
        raise ValueError(f"expected a duration like 90s, 15m, 1h, got {value!r}")

    @property
    def ns(self) -> int:
        return int(round(self * 1e9))


class Size(int):
    """Bytes. Written as a number or as ``512MiB``, ``8GiB``, ``500MB``, ``64KiB``."""

    _UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
    _UNITS.update({"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40})
    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

    @classmethod
    def parse(cls, value: object) -> Size:
        if isinstance(value, bool):
            raise ValueError("expected a size")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError("a size cannot be negative")
            return cls(int(value))
        if isinstance(value, str) and (m := cls._RE.match(value)) and m.group(2).lower() in cls._UNITS:
            return cls(int(float(m.group(1)) * cls._UNITS[m.group(2).lower()]))
        raise ValueError(f"expected a size like 512MiB, 8GiB, got {value!r}")

    def __str__(self) -> str:
        for unit in ("TiB", "GiB", "MiB", "KiB"):
            if self and self % self._UNITS[unit.lower()] == 0:
                return f"{self // self._UNITS[unit.lower()]}{unit}"
        return str(int(self))


class _S(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PerEventType(_S, frozen=True):
    exec: Duration = Duration(900)
    open: Duration = Duration(900)
    dns: Duration = Duration(900)
    connect: Duration = Duration(900)
    syscalls: Duration = Duration(900)


class EventTypesEnabled(_S, frozen=True):
    exec: bool = True
    open: bool = True
    dns: bool = True
    connect: bool = True
    syscalls: bool = True


class AnomalyDetection(_S, frozen=True):
    minimum_stable_period: PerEventType = PerEventType()
    workload_warmup_period: Duration = Duration(180)
    unstable_profile_time_threshold: Duration = Duration(3600)
    unstable_profile_size_threshold: int = 10_000


class Readiness(_S, frozen=True):
    """When a learned profile is ready to enforce (`vigil profiles readiness`, docs/models.md)."""

    min_container_starts: int = 1  # start-up behaviour (the syscalls of init) is only seen when a container starts
    min_replicas: int = 1  # distinct containers of the version observed
    drift_window: Duration = Duration(3600)  # no drift of the generator's event types this long before now
    min_quiet: Duration = Duration(0)  # no new behaviour this long (on top of the version being stable)


class SecurityProfile(_S, frozen=True):
    enabled: bool = True
    max_image_tags: int = 10
    dns_match_max_depth: int = 3
    max_profiles_in_memory: int = 10_000
    snapshot_interval: Duration = Duration(10)  # wall-clock seconds between learner snapshots
    anomaly_detection: AnomalyDetection = AnomalyDetection()
    readiness: Readiness = Readiness()


class Network(_S, frozen=True):
    enabled: bool = True


class RuntimeSecurityConfig(_S, frozen=True):
    enabled: bool = True
    network: Network = Network()
    event_types: EventTypesEnabled = EventTypesEnabled()
    security_profile: SecurityProfile = SecurityProfile()


class Nats(_S, frozen=True):
    url: str = ""  # empty: start the embedded nats-server
    port: int = 4222  # embedded server's client port (-1: any free port)
    monitor_port: int = 0  # embedded server's HTTP monitoring port (0: off, -1: any)
    partitions: int = 4  # EVENTS / DRIFT partitions (fixed once streams exist)
    replicas: int = 1  # stream replicas (3 on a JetStream cluster)
    duplicate_window: Duration = Duration(120)
    publish_window: int = 2000  # outstanding publish acks per publisher
    fetch_batch: int = 64  # messages per pull request
    max_ack_pending: int = 20_000
    ack_wait: Duration = Duration(30)
    lease_ttl: Duration = Duration(10)  # partition leases of scaled-out services (profile-learner instances)
    credentials: str = ""  # path to a .creds file; secret material stays in that file


class Identity(_S, frozen=True):
    hold: Duration = Duration(5)  # longest an unnamed container's events wait for its runtime to answer
    hold_events: int = 100_000  # events held at most (all containers); past it new ones are dropped, counted
    stopped_grace: Duration = Duration(300)  # a stopped container's registry entry is kept this long
    poll_interval: Duration = Duration(0.25)  # on-disk runtime state is polled (and re-read on an unknown id)
    discover_interval: Duration = Duration(10)  # look again for runtimes that were not present (0: at start only)


class EngineRuntime(_S, frozen=True):
    enabled: bool = True
    socket: str = "/var/run/docker.sock"


class PodmanRuntime(_S, frozen=True):
    enabled: bool = True
    socket: str = "/run/podman/podman.sock"  # its Engine API service, when it runs; else the on-disk state
    graphroot: str = "/var/lib/containers/storage"
    runroot: str = "/run/containers/storage"
    events_log: str = "/run/libpod/events/events.log"  # container labels, when podman logs events to a file


class CrioRuntime(_S, frozen=True):
    enabled: bool = True
    socket: str = "/var/run/crio/crio.sock"  # present = CRI-O runs here; its state is read from storage
    graphroot: str = "/var/lib/containers/storage"
    runroot: str = "/run/containers/storage"


class ContainerdRuntime(_S, frozen=True):
    enabled: bool = True
    state: str = "/run/containerd"  # task bundles: <state>/io.containerd.runtime.v2.task/<namespace>/<id>


class Runtimes(_S, frozen=True):
    """Where the collector learns workload identity, each used when present (docs/collector.md)."""

    docker: EngineRuntime = EngineRuntime()
    podman: PodmanRuntime = PodmanRuntime()
    containerd: ContainerdRuntime = ContainerdRuntime()
    crio: CrioRuntime = CrioRuntime()


class Collector(_S, frozen=True):
    source: str = "auto"  # auto | ebpf | trace:FILE | synthetic
    node: str = ""  # default: host name
    batch_size: int = 500
    batch_interval: Duration = Duration(0.025)  # longest a partial batch waits (event → alert latency)
    tick_interval: Duration = Duration(1)
    host_processes: Literal["ignore", "tag"] = "ignore"
    workloads_file: str = ""
    dedup_map_size: int = 65_536
    dedup: bool = True  # in-kernel suppression of repeated (cgroup, behaviour) keys
    dedup_flush_interval: Duration = Duration(0)  # 0: flush only when the workload registry changes
    dedup_flush_on_profile_change: bool = True  # forget an image's dedup entries when its profile changes state
    ring_buffer_bytes: int = 16 << 20
    consume_interval: Duration = Duration(0.01)  # ring buffer drain period (submits do not wake us)
    syscalls_interval: Duration = Duration(1)  # syscall bitmap drain period
    syscall_map_size: int = 16_384  # (cgroup, pid) syscall bitmaps held between drains; past it: counted loss
    synthetic_rate: int = 1000  # events/s offered by the synthetic source
    synthetic_containers: int = 4
    synthetic_images: int = 2
    synthetic_mix: str = "exec=1,open=6,dns=1,connect=1,syscalls=1"
    synthetic_events: int = 0  # stop after this many (0: run until stopped)
    identity: Identity = Identity()
    runtimes: Runtimes = Runtimes()


class Suppression(_S, frozen=True):
    image: str = "*"
    executable: str = "*"
    dns: str = "*"
    event_type: str = "*"


class AnomalyDetector(_S, frozen=True):
    dedup_window: Duration = Duration(60)
    suppressions: list[Suppression] = []
    snapshot_interval: Duration = Duration(10)  # wall-clock seconds between detector/throttler snapshots


class DecisionIntake(_S, frozen=True):
    enabled: bool = False
    socket: str = ""  # default: <data_dir>/intake.sock
    socket_mode: str = "0600"
    max_line_bytes: int = 1 << 20
    gatekeeper_dir: str = ""  # Gatekeeper's disk-export path to follow (its Connection's `path`); empty: off
    gatekeeper_poll_interval: Duration = Duration(0.5)  # how often the followed directory is listed when idle


class Archive(_S, frozen=True):
    path: str = "decisions.duckdb"  # relative to data_dir
    batch_size: int = 122_880  # decisions per commit at most: one DuckDB row group, written straight to the file
    flush_interval: Duration = Duration(0.2)  # longest a partial batch waits for more decisions before its commit
    retry_initial: Duration = Duration(0.1)
    retry_max: Duration = Duration(10)


class AuditReports(_S, frozen=True):
    dir: str = "audit"  # relative to data_dir
    keep_runs: int = 3


class SelfTest(_S, frozen=True):
    enabled: bool = False


class Telemetry(_S, frozen=True):
    exporter: Literal["none", "otlp", "prometheus"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    prometheus_port: int = 9464
    heartbeat_interval: Duration = Duration(5)
    log_level: str = "INFO"


class StreamLimits(_S, frozen=True):
    """A stream's bounds (docs/configuration.md, "Storage"). 0 = unbounded."""

    max_age: Duration = Duration(0)  # EVENTS: enforced by compaction, below the safe point only
    max_bytes: Size = Size(0)  # writes are refused past it (discard new), never old messages dropped


class Streams(_S, frozen=True):
    events: StreamLimits = StreamLimits(max_bytes=Size(8 << 30))
    drift: StreamLimits = StreamLimits(max_bytes=Size(1 << 30))
    profiles: StreamLimits = StreamLimits(max_bytes=Size(1 << 30))
    commands: StreamLimits = StreamLimits(max_bytes=Size(256 << 20))
    alerts: StreamLimits = StreamLimits(max_bytes=Size(1 << 30))
    decisions: StreamLimits = StreamLimits(max_bytes=Size(2 << 30))
    deadletter: StreamLimits = StreamLimits(max_age=Duration(7 * 86400), max_bytes=Size(512 << 20))
    models: StreamLimits = StreamLimits(max_bytes=Size(256 << 20))

    def of(self, stream: str) -> StreamLimits:
        """The limits of a stream by its name (``EVENTS`` → ``streams.events``); none for a
        stream that is not Vigil's (a test's, an extension's)."""
        limits: StreamLimits = getattr(self, stream.lower(), StreamLimits())
        return limits


class Storage(_S, frozen=True):
    compact_at: float = 0.5  # EVENTS is purged below its safe point once it holds this fraction of max_bytes
    headroom_warning: float = 0.2  # a storage decision when a stream's free fraction falls below this
    collector_buffer_bytes: Size = Size(64 << 20)  # batches a collector holds while EVENTS refuses writes
    archive_dir: str = ""  # Parquet archive of raw events before compaction purges them (relative to data_dir; off)


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "vigil")


class Settings(_S, frozen=True):
    data_dir: str = field(default_factory=_default_data_dir)
    runtime_security_config: RuntimeSecurityConfig = RuntimeSecurityConfig()
    alert_throttling: bool = True
    max_alert_per_sec: int = 10
    throttle_sec: int = 30
    max_alert_per_sec_per_rule: dict[str, int] = {}  # rule id → its own per-container budget
    nats: Nats = Nats()
    streams: Streams = Streams()
    storage: Storage = Storage()
    collector: Collector = Collector()
    anomaly_detector: AnomalyDetector = AnomalyDetector()
    decision_intake: DecisionIntake = DecisionIntake()
    archive: Archive = Archive()
    audit_reports: AuditReports = AuditReports()
    self_test: SelfTest = SelfTest()
    telemetry: Telemetry = Telemetry()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def node_name(self) -> str:
        return self.collector.node or socket.gethostname()


# --- validation of values that types alone do not catch -------------------------

_POSITIVE = {
    "runtime_security_config.security_profile.max_image_tags",
    "runtime_security_config.security_profile.dns_match_max_depth",
    "runtime_security_config.security_profile.max_profiles_in_memory",
    "runtime_security_config.security_profile.anomaly_detection.unstable_profile_size_threshold",
    "max_alert_per_sec",
    "throttle_sec",
    "nats.partitions",
    "nats.replicas",
    "nats.publish_window",
    "nats.fetch_batch",
    "nats.max_ack_pending",
    "collector.batch_size",
    "collector.dedup_map_size",
    "collector.ring_buffer_bytes",
    "collector.syscall_map_size",
    "collector.synthetic_containers",
    "collector.synthetic_images",
    "collector.identity.hold_events",
    "decision_intake.gatekeeper_poll_interval",
    "archive.batch_size",
    "audit_reports.keep_runs",
}


def _check(settings: Settings) -> None:
    values = dict(flatten(settings))
    for key in _POSITIVE:
        if values[key] <= 0:
            raise SettingsError(key, f"must be > 0, got {values[key]}")
    for rule, budget in settings.max_alert_per_sec_per_rule.items():
        if budget <= 0:
            raise SettingsError(f"max_alert_per_sec_per_rule.{rule}", f"must be > 0, got {budget}")
    for key in ("storage.compact_at", "storage.headroom_warning"):
        if not 0 < values[key] < 1:
            raise SettingsError(key, f"must be a fraction between 0 and 1, got {values[key]}")
    src = settings.collector.source
    if src not in ("auto", "ebpf", "synthetic") and not src.startswith("trace:"):
        raise SettingsError("collector.source", f"expected auto, ebpf, synthetic or trace:FILE, got {src!r}")
    if not re.fullmatch(r"0?[0-7]{3}", settings.decision_intake.socket_mode):
        raise SettingsError("decision_intake.socket_mode", f"expected an octal mode like 0600, got {src!r}")


# --- schema walking --------------------------------------------------------------


def _fields(tp: type[Struct]) -> Iterator[tuple[str, Any]]:
    hints = get_type_hints(tp)
    for name in tp.__struct_fields__:
        yield name, hints[name]


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, _S)


def schema(tp: type[Struct] = Settings, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf key: (dotted key, type, default)."""
    defaults = tp()
    for name, hint in _fields(tp):
        key = f"{prefix}{name}"
        if _is_section(hint):
            yield from schema(hint, key + ".")
        else:
            yield key, hint, getattr(defaults, name)


def env_name(key: str) -> str:
    return "VIGIL_" + key.upper().replace(".", "_")


def flatten(obj: Struct, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if isinstance(value, _S):
            yield from flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def builtin(value: Any) -> Any:
    """An ``enc_hook`` for msgspec: a Duration as its seconds, a Size as its bytes."""
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, Size):
        return int(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def type_name(tp: Any) -> str:
    if tp is Duration:
        return "duration"
    if tp is Size:
        return "size"
    if get_origin(tp) is Literal:
        return " | ".join(str(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return "list"
    return getattr(tp, "__name__", str(tp))


# --- loading ---------------------------------------------------------------------


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Duration:
        return Duration.parse(obj)
    if tp is Size:
        return Size.parse(obj)
    raise NotImplementedError(tp)


def _env_value(raw: str, tp: Any) -> Any:
    if tp is str:
        return raw
    if tp is Duration or tp is Size:
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse {raw!r}: {exc}") from exc


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _msgspec_path(message: str) -> str:
    m = re.search(r"at `\$\.?([^`]*)`", message)
    return re.sub(r"\[\d+\]", "", m.group(1)) if m else ""


def default_config_path(env: Mapping[str, str]) -> Path | None:
    if env.get("VIGIL_CONFIG"):
        return Path(env["VIGIL_CONFIG"])
    local = Path("vigil.yaml")
    return local if local.exists() else None


class Loaded(Struct, frozen=True):
    settings: Settings
    sources: dict[str, str]  # key → "default" | "file:<path>" | "env:<NAME>"
    path: str | None


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Loaded:
    """Read the YAML file (if any), apply ``VIGIL_*`` overrides, validate."""
    env = os.environ if env is None else env
    config_path = Path(path) if path else default_config_path(env)
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_path is not None:
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except OSError as exc:
            raise SettingsError("(file)", f"cannot read {config_path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError("(file)", f"{config_path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError("(file)", f"{config_path} must hold a mapping")
        tree = loaded
        for key in _leaf_keys(tree):
            sources[key] = f"file:{config_path}"
    for key, tp, _ in schema():
        name = env_name(key)
        if name in env:
            try:
                _set_path(tree, key, _env_value(env[name], tp))
            except ValueError as exc:
                raise SettingsError(key, f"{name}: {exc}") from exc
            sources[key] = f"env:{name}"
    try:
        settings = msgspec.convert(tree, Settings, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        key = _msgspec_path(msg)
        if "unknown field" in msg:
            unknown = re.search(r"unknown field `([^`]*)`", msg)
            key = f"{key}.{unknown.group(1)}" if key and unknown else (unknown.group(1) if unknown else key)
            raise SettingsError(key, "unknown key") from exc
        raise SettingsError(key or "(root)", msg.split(" - at ")[0]) from exc
    _check(settings)
    for key, _, _ in schema():
        sources.setdefault(key, "default")
    return Loaded(settings=settings, sources=sources, path=str(config_path) if config_path else None)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    return load(path, env).settings
