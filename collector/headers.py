"""The kernel header tree BCC compiles bpf/collector.c against, and what was tried.

Tried in this order; the first that is there wins, and the collector logs it
with everything tried before it (docs/operations.md, "Kernel headers in the
collector pod"):

1. ``BCC_KERNEL_SOURCE``, when the operator set it: used as given;
2. ``/lib/modules/<release>/build``: the node's own header package (BCC's
   default; BCC also reads ``source`` beside it, so the variable stays unset);
3. ``/usr/src/linux-headers-<release>`` holding ``include/linux/kconfig.h``;
4. ``<cache>/<release>``: the tree infra/host/install-kernel-deps.sh builds from
   Debian's header packages (on a host, or in the collector pod's init
   container), or an earlier extraction of 5.;
5. ``/sys/kernel/kheaders.tar.xz`` (CONFIG_IKHEADERS): the running kernel's own
   headers, extracted once into ``<cache>/<release>``.

Any tree that compiles will do: the programs use BPF helpers and the
tracepoint structs BCC builds from tracefs, never struct layouts from headers.
The node's paths hang off ``root`` (and the cache follows
``VIGIL_KERNEL_HEADERS_CACHE``) so tests lay out a node in a temporary directory.
"""

from __future__ import annotations

import os
import platform
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CACHE = Path("/var/cache/vigil/kernel-headers")
KCONFIG = Path("include/linux/kconfig.h")
BUILD_STEP = "infra/host/install-kernel-deps.sh --headers (the collector pod's init container runs it)"


@dataclass(frozen=True)
class Headers:
    path: Path | None  # None: no tree found
    how: str  # which of the five it is
    tried: tuple[str, ...]  # what was looked at before it, each with why it was passed over
    set_env: bool = True  # point BCC_KERNEL_SOURCE at path (not for BCC's own default)

    def describe(self) -> str:
        if self.path is None:
            return f"no kernel header tree (tried: {', '.join(self.tried)}; build one: {BUILD_STEP})"
        before = f"; tried first: {', '.join(self.tried)}" if self.tried else ""
        return f"kernel headers: {self.path} ({self.how}){before}"


def environment(found: Headers) -> dict[str, str]:
    """What BCC needs in its environment to compile against ``found`` (nothing for
    BCC's own default, or when no tree was found)."""
    return {"BCC_KERNEL_SOURCE": str(found.path)} if found.path is not None and found.set_env else {}


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("VIGIL_KERNEL_HEADERS_CACHE", str(CACHE)))


def find(
    release: str | None = None,
    env: Mapping[str, str] = os.environ,
    root: Path = Path("/"),
    extract: bool = False,
) -> Headers:
    """The first usable tree; with ``extract`` the kernel's own archive is
    unpacked into the cache when it is the one left (else it counts as found)."""
    release = release or platform.release()
    tried: list[str] = []
    if given := env.get("BCC_KERNEL_SOURCE"):
        return Headers(Path(given), "BCC_KERNEL_SOURCE", ())
    tried.append("BCC_KERNEL_SOURCE (not set)")
    build = root / "lib/modules" / release / "build"
    if build.is_dir():
        return Headers(build, "the node's header package", tuple(tried), set_env=False)
    tried.append(f"{build} (absent)")
    usr_src = root / "usr/src" / f"linux-headers-{release}"
    if (usr_src / KCONFIG).is_file():
        return Headers(usr_src, "the node's header package", tuple(tried))
    tried.append(f"{usr_src} ({'incomplete' if usr_src.is_dir() else 'absent'})")
    cached = cache_dir(env) / release
    if (cached / KCONFIG).is_file():
        return Headers(cached, "the header cache", tuple(tried))
    tried.append(f"{cached} (empty)")
    archive = root / "sys/kernel/kheaders.tar.xz"
    if not archive.is_file():
        tried.append(f"{archive} (absent: kernel built without CONFIG_IKHEADERS)")
        return Headers(None, "", tuple(tried))
    if not extract:
        return Headers(cached, f"the kernel's own {archive}, to extract", tuple(tried))
    try:
        unpack(archive, cached)
    except (OSError, tarfile.TarError) as exc:
        tried.append(f"{archive} (could not extract into {cached}: {exc})")
        return Headers(None, "", tuple(tried))
    return Headers(cached, f"extracted from the kernel's own {archive}", tuple(tried))


def unpack(archive: Path, dest: Path) -> None:
    """Extract the kheaders archive next to ``dest``, then move it into place."""
    staged = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:xz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(staged, filter="data")
            else:
                tar.extractall(staged)  # noqa: S202 - the running kernel's own archive
        if not (staged / KCONFIG).is_file():
            raise OSError(f"no {KCONFIG} in the archive")
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
