"""Where the collector gets a kernel header tree (collector/headers.py): the
order, what is said about each place passed over, and the kernel's own
kheaders archive extracted into the cache. A node is laid out in tmp_path."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from collector import headers

RELEASE = "6.18.0-test"


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return tmp_path, {"VIGIL_KERNEL_HEADERS_CACHE": str(tmp_path / "cache")}


def tree(path: Path) -> Path:
    (path / "include/linux").mkdir(parents=True)
    (path / "include/linux/kconfig.h").write_text("/* kconfig */\n")
    return path


def kheaders(root: Path, members: dict[str, bytes]) -> Path:
    archive = root / "sys/kernel/kheaders.tar.xz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def find(node: tuple[Path, dict[str, str]], extract: bool = False, **env: str) -> headers.Headers:
    root, base = node
    return headers.find(RELEASE, {**base, **env}, root, extract=extract)


def test_nothing_found_names_every_place_tried_and_how_to_build_one(node: tuple[Path, dict[str, str]]) -> None:
    found = find(node)
    assert found.path is None
    text = found.describe()
    for place in ("BCC_KERNEL_SOURCE (not set)", f"lib/modules/{RELEASE}/build (absent)",
                  f"usr/src/linux-headers-{RELEASE} (absent)", f"cache/{RELEASE} (empty)",
                  "kheaders.tar.xz (absent: kernel built without CONFIG_IKHEADERS)",
                  "install-kernel-deps.sh --headers"):  # fmt: skip
        assert place in text, (place, text)


def test_the_operators_bcc_kernel_source_wins(node: tuple[Path, dict[str, str]]) -> None:
    root, _ = node
    tree(root / "lib/modules" / RELEASE / "build")
    found = find(node, BCC_KERNEL_SOURCE="/opt/linux")
    assert found.path == Path("/opt/linux") and found.tried == ()


def test_the_nodes_header_package_is_left_to_bccs_own_lookup(node: tuple[Path, dict[str, str]]) -> None:
    root, base = node
    (root / "lib/modules" / RELEASE / "build").mkdir(parents=True)
    tree(Path(base["VIGIL_KERNEL_HEADERS_CACHE"]) / RELEASE)
    found = find(node)
    assert found.path == root / "lib/modules" / RELEASE / "build" and not found.set_env  # BCC also reads source/
    assert headers.environment(found) == {}
    assert "kernel headers:" in found.describe() and "BCC_KERNEL_SOURCE (not set)" in found.describe()


def test_an_incomplete_usr_src_tree_is_passed_over_for_the_cache(node: tuple[Path, dict[str, str]]) -> None:
    root, base = node
    (root / "usr/src" / f"linux-headers-{RELEASE}" / "include").mkdir(parents=True)  # -amd64 alone: no kconfig.h
    cached = tree(Path(base["VIGIL_KERNEL_HEADERS_CACHE"]) / RELEASE)
    found = find(node)
    assert found.path == cached and found.set_env
    assert headers.environment(found) == {"BCC_KERNEL_SOURCE": str(cached)}
    assert any("incomplete" in t for t in found.tried)


def test_a_complete_usr_src_tree_comes_before_the_cache(node: tuple[Path, dict[str, str]]) -> None:
    root, base = node
    usr_src = tree(root / "usr/src" / f"linux-headers-{RELEASE}")
    tree(Path(base["VIGIL_KERNEL_HEADERS_CACHE"]) / RELEASE)
    assert find(node).path == usr_src


def test_the_kernels_own_archive_is_extracted_into_the_cache_once(node: tuple[Path, dict[str, str]]) -> None:
    root, base = node
    archive = kheaders(root, {"include/linux/kconfig.h": b"/* k */\n", "arch/x86/include/asm/a.h": b"\n"})
    cached = Path(base["VIGIL_KERNEL_HEADERS_CACHE"]) / RELEASE
    looked = find(node)  # without extract (vigil up, self-test): found, nothing written
    assert looked.path == cached and "to extract" in looked.how and not cached.exists()
    found = find(node, extract=True)
    assert found.path == cached and (cached / "arch/x86/include/asm/a.h").is_file()
    assert str(archive) in found.how
    again = find(node, extract=True)
    assert again.how == "the header cache"  # the next start uses the extraction
    assert not list(cached.parent.glob("*.tmp.*"))


def test_an_archive_without_kconfig_leaves_nothing_behind(node: tuple[Path, dict[str, str]]) -> None:
    root, base = node
    kheaders(root, {"include/other.h": b"\n"})
    found = find(node, extract=True)
    assert found.path is None and "could not extract" in found.describe()
    assert not any(Path(base["VIGIL_KERNEL_HEADERS_CACHE"]).glob("*"))
