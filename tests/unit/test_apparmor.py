"""AppArmor profile text: golden files, the seed's shape, and apparmor_parser in check-only mode."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from contracts.models import BehaviourModel, Capabilities, FileRule
from services.audit_report_writer import apparmor
from tests.unit.golden import assert_golden
from tests.unit.test_modeling import run_window, seed_model, window_request

PARSER = shutil.which("apparmor_parser") or (
    "/usr/sbin/apparmor_parser" if Path("/usr/sbin/apparmor_parser").exists() else None
)


def replicas_model() -> BehaviourModel:
    _, closed, _ = run_window(window_request())
    assert closed[0].model is not None
    return closed[0].model


def test_seed_profile_golden() -> None:
    assert_golden("apparmor_seed.profile", apparmor.render(seed_model()))


def test_replicas_profile_golden() -> None:
    assert_golden("apparmor_replicas.profile", apparmor.render(replicas_model()))


def test_profile_shape_matches_the_seed() -> None:
    text = apparmor.render(seed_model())
    lines = text.splitlines()
    assert lines[3:5] == ["abi <abi/3.0>,", "#include <tunables/global>"]
    assert "profile vigil-debian-10 flags=(attach_disconnected,mediate_deleted) {" in lines
    assert "  #include <abstractions/base>" in lines
    assert "  /usr/bin/id ix," in lines
    assert "  owner /root/c1 rw," in lines and "  /etc/shadow r," in lines
    assert "  /usr/lib/x86_64-linux-gnu/** mr," in lines
    assert "  ptrace (trace,read,tracedby,readby) peer=vigil-debian-10," in lines
    assert "  signal (send,receive) peer=vigil-debian-10," in lines
    assert not any(line.strip().startswith("capability") for line in lines)  # unknown: none granted
    assert text.endswith("}\n")


def test_partial_rules_carry_coverage() -> None:
    text = apparmor.render(replicas_model())
    assert "  /bin/sh ix,  # coverage 1/2" in text
    assert "  /usr/sbin/nginx ix,\n" in text
    assert "  owner /var/log/nginx/access.log a," in text


def test_known_capabilities_and_odd_paths() -> None:
    model = BehaviourModel(
        profile_name="p",
        image_name="i",
        files=[FileRule(path='/data/my "file"[1]', perms="r")],
        capabilities=Capabilities(known=True, reason="", names=["CAP_NET_BIND_SERVICE", "chown"]),
    )
    text = apparmor.render(model)
    assert "  capability chown,\n  capability net_bind_service," in text
    assert '  "/data/my \\"file\\"\\[1\\]" r,' in text


@pytest.mark.skipif(PARSER is None, reason="apparmor_parser not installed (Debian package 'apparmor')")
@pytest.mark.parametrize("which", ["seed", "replicas", "odd"])
def test_apparmor_parser_accepts_profile(which: str, tmp_path: Path) -> None:
    """Check-only: -Q (skip kernel load) -K (no cache); AppArmor is off on this kernel, so nothing is loaded."""
    model = {
        "seed": seed_model,
        "replicas": replicas_model,
        "odd": lambda: BehaviourModel(profile_name="p", image_name="i", files=[FileRule(path="/a b/c[1]", perms="rw")]),
    }[which]()
    path = tmp_path / "profile"
    path.write_text(apparmor.render(model))
    res = subprocess.run([str(PARSER), "-Q", "-K", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(PARSER is None, reason="apparmor_parser not installed (Debian package 'apparmor')")
def test_apparmor_parser_rejects_broken_profile(tmp_path: Path) -> None:
    path = tmp_path / "profile"
    path.write_text(apparmor.render(seed_model()).replace(" mr,", " mrq,"))
    res = subprocess.run([str(PARSER), "-Q", "-K", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode != 0 and "syntax error" in res.stderr
