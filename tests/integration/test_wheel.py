"""The installed package carries everything the collector needs: a wheel built
from this tree, installed into a fresh venv, finds bpf/collector.c in that
venv (not in the source tree) and, as root with BCC, loads the program from it.

The fresh venv has no pip and no dependencies of its own: a path line in a
.pth file appends the project venv's site-packages (for msgspec, bcc, …)
after its own, and a plain path line does not run that directory's .pth
files, so the project's editable install stays out of it. The interpreter
runs isolated (-I) from a temporary directory, so the source tree is not on
its path either.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root_reason

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ("pyproject.toml", "README.md", "contracts", "services", "collector", "bpf")
PROBE = textwrap.dedent(
    """
    import json, os, sys
    from collector import ebpf
    out = {"collector": ebpf.__file__, "source": str(ebpf.BPF_SOURCE), "missing": ebpf.missing()}
    if sys.argv[1:] == ["load"]:
        probe = ebpf.Probe(ebpf.ProbeOptions(dedup_size=1024, ring_bytes=1 << 20))
        os.stat("/")  # an openat the loaded program may report
        out["counters"] = probe.counters()
        probe.close()
    print(json.dumps(out))
    """
)


def copy_sources(dest: Path) -> Path:
    """What the wheel is built from (setuptools writes build/ beside it: not in the tree)."""
    dest.mkdir()
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only the wheel built from this tree; yields its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_sources(tmp / "src")
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("vigil-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"bpf/collector.c", "bpf/include/events.h", "collector/ebpf.py"} <= set(names), names
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True, timeout=300)
    (own,) = venv.glob("lib/python3*/site-packages")
    (own / "project-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    yield python


def run_probe(python: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [str(python), "-I", "-c", PROBE, *args], capture_output=True, text=True, cwd=python.parent, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_wheel_carries_the_bpf_source_and_the_collector_finds_it_where_installed(installed: Path) -> None:
    out = run_probe(installed)
    venv = installed.parent.parent
    assert Path(str(out["collector"])).is_relative_to(venv), out
    source = Path(str(out["source"]))
    assert source.is_relative_to(venv) and source.is_file(), out
    assert not any("BPF source" in m for m in out["missing"]), out  # type: ignore[attr-defined]


@pytest.mark.kernel
def test_the_installed_package_loads_its_bpf_program_as_root(installed: Path) -> None:
    if reason := needs_root_reason():
        pytest.skip(reason)
    lacking = run_probe(installed)["missing"]
    if lacking:
        pytest.skip(f"eBPF collector unavailable: {'; '.join(lacking)}")  # type: ignore[arg-type]
    out = run_probe(installed, "load")
    assert Path(str(out["source"])).is_relative_to(installed.parent.parent)
    assert isinstance(out["counters"], dict) and out["counters"], out
