"""The Tiltfile, checked without the tilt binary: starlark-go evaluates it in
both modes against stubs with Tilt's real signatures (tilt_stubs.star), so a
misspelled function or keyword fails here as it would in `tilt up`; then the
recorded resources are checked against the services and manifests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

starlark_go = pytest.importorskip("starlark_go", reason="starlark-go (dev extra) is not installed")

from services.registry import SERVICES  # noqa: E402

# Tilt's file options (internal/tiltfile/starkit/environment.go): sets, global
# reassignment and top-level if/for, recursion and while.
starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)

ROOT = Path(__file__).resolve().parents[2]
STUBS = (Path(__file__).parent / "tilt_stubs.star").read_text()
_MODULE_CALL = re.compile(r"\b(os|config)\.([A-Za-z_][\w.]*)")


def evaluate(
    source: str, args: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run a Tiltfile against the stubs; return every recorded builtin call."""
    rewritten = _MODULE_CALL.sub(lambda m: f"{m.group(1)}__{m.group(2).replace('.', '__')}", source)
    prelude = f"_ARGS = {json.dumps(args or {})}\n_ENV = {json.dumps(env or {})}\n"
    sl = starlark_go.Starlark()
    sl.exec(prelude + STUBS + "\n" + rewritten, filename="Tiltfile")
    return list(sl.get("_calls"))


def tiltfile() -> str:
    return (ROOT / "Tiltfile").read_text()


def by_kind(calls: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in calls if c["_kind"] == kind]


def test_local_mode_runs_every_service_as_a_served_process_with_a_readiness_probe() -> None:
    calls = evaluate(tiltfile())
    resources = {c["name"]: c for c in by_kind(calls, "local_resource")}
    assert set(SERVICES) <= set(resources)
    for name in SERVICES:
        res = resources[name]
        assert res["serve_cmd"] == [".venv/bin/vigil", "run", name]
        assert res["readiness_probe"]["action"]["command"][-2:] == ["--require", name]
        assert "nats" in res["resource_deps"] and res["labels"] == ["services"]
        assert res["deps"] and res["serve_env"]["VIGIL_NATS_URL"].startswith("nats://")
    assert resources["nats"]["readiness_probe"] is not None and resources["nats"]["serve_cmd"]
    assert {"collector", "self-test", "install"} <= set(resources)


def test_every_dependency_names_a_defined_resource_and_every_path_exists() -> None:
    for args in ({}, {"mode": "k8s"}):
        calls = evaluate(tiltfile(), args)
        names = {c["name"] for c in by_kind(calls, "local_resource")}
        names |= {c["workload"] for c in by_kind(calls, "k8s_resource")}
        for call in by_kind(calls, "local_resource") + by_kind(calls, "k8s_resource"):
            assert set(call["resource_deps"]) <= names, (args, call)
        for call in by_kind(calls, "local_resource"):
            for dep in call["deps"]:
                assert (ROOT / dep).exists(), f"{call['name']}: dep {dep} does not exist"


def test_k8s_mode_deploys_nats_helm_collector_daemonset_and_service_deployments() -> None:
    calls = evaluate(tiltfile(), {"mode": "k8s"})
    helm_cmd = next(c for c in by_kind(calls, "local_resource") if c["name"] == "nats-helm")["cmd"]
    assert "nats/nats" in helm_cmd and "infra/k8s/nats-values.yaml" in helm_cmd
    files = [f for c in by_kind(calls, "k8s_yaml") for f in c["yaml"]]
    workloads = set()
    for f in files:
        for doc in yaml.safe_load_all((ROOT / f).read_text()):
            if doc and doc["kind"] in ("Deployment", "DaemonSet"):
                workloads.add(doc["metadata"]["name"])
    managed = {c["workload"] for c in by_kind(calls, "k8s_resource")}
    assert managed == workloads and set(SERVICES) | {"vigil-collector"} == managed
    (image,) = by_kind(calls, "custom_build")
    assert image["ref"] == "vigil" and image["skips_local_docker"]  # podman builds and pushes, not Tilt's docker
    assert image["command"] == "bash infra/docker/build.sh --push $EXPECTED_REF"
    assert all((ROOT / dep).exists() for dep in image["deps"]), image["deps"]
    assert not by_kind(calls, "default_registry")  # the cluster's advertised registry unless --registry
    with_registry = evaluate(tiltfile(), {"mode": "k8s", "registry": "localhost:5005"})
    assert by_kind(with_registry, "default_registry")[0]["host"] == "localhost:5005"


def test_the_image_inputs_are_what_the_build_script_copies() -> None:
    calls = evaluate(tiltfile(), {"mode": "k8s"})
    (image,) = by_kind(calls, "custom_build")
    script = (ROOT / "infra/docker/build.sh").read_text()
    staged = re.search(r"tar -C \"\$root\" [^|]*-cf - ([^|]+)\|", script.replace("\\\n", " "))
    assert staged is not None
    copied = set(staged.group(1).split())
    assert copied - {"infra/docker/Dockerfile"} <= set(image["deps"]) and "infra/docker" in image["deps"]


def test_a_misspelled_keyword_fails() -> None:
    broken = tiltfile().replace('resource_deps=["nats"],', 'resource_dep=["nats"],', 1)
    assert broken != tiltfile()
    with pytest.raises(starlark_go.EvalError, match='unexpected keyword argument "resource_dep"'):
        evaluate(broken)


def test_a_misspelled_keyword_in_the_k8s_branch_fails_in_k8s_mode() -> None:
    broken = tiltfile().replace("port_forwards=", "port_forward=", 1)
    evaluate(broken)  # the local branch does not call it
    with pytest.raises(starlark_go.EvalError, match="port_forward"):
        evaluate(broken, {"mode": "k8s"})


def test_a_misspelled_function_fails_even_in_an_untaken_branch() -> None:
    broken = tiltfile().replace("custom_build(", "custom_bulid(", 1)
    with pytest.raises(starlark_go.ResolveError):
        evaluate(broken)


def test_stubs_reject_what_tilt_rejects() -> None:
    with pytest.raises(starlark_go.EvalError, match="cmd and/or a serve_cmd"):
        evaluate('local_resource("x")')
    with pytest.raises(starlark_go.EvalError, match="trigger_mode"):
        evaluate('local_resource("x", cmd="true", trigger_mode="manual")')
    with pytest.raises(starlark_go.EvalError, match=r"missing 1 argument \(port\)"):
        evaluate("http_get_action(path='/')")


def test_unknown_mode_fails() -> None:
    with pytest.raises(starlark_go.EvalError, match="--mode must be local or k8s"):
        evaluate(tiltfile(), {"mode": "docker"})
