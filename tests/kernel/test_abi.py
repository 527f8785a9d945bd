"""The Python mirror (collector/abi.py) against the ABI header as clang lays it
out, and against the records the loaded program actually emits."""

from __future__ import annotations

import asyncio
import ctypes
import pathlib
import socket

import pytest

from collector import abi
from collector.dns import build_query
from tests.kernel.conftest import SKIP, KernelEnv, container_cgroup, which
from tests.support import wait_for

pytestmark = pytest.mark.kernel


@pytest.mark.skipif(bool(SKIP), reason=SKIP or "")
def test_mirror_matches_clang_layout() -> None:
    from bcc import BPF

    from collector.ebpf import BPF_INCLUDE, _prepare_environment

    _prepare_environment()
    names = list(abi.LAYOUTS)
    text = '#include "events.h"\n' + "".join(f"BPF_ARRAY(abi_{n}, struct {n}, 1);\n" for n in names)
    text += "int noop(void *ctx) { return 0; }\n"
    b = BPF(text=text.encode(), cflags=[f"-I{BPF_INCLUDE}"])
    try:
        for name in names:
            leaf = b[f"abi_{name}".encode()].Leaf
            c_fields = {}
            for fname, ctype in leaf._fields_:
                if fname == "hdr":
                    continue
                c_fields[fname] = (getattr(leaf, fname).offset, ctypes.sizeof(ctype))
            record = any(fname == "hdr" for fname, _ in leaf._fields_)
            mirror = {f: v for f, v in abi.offsets(name).items() if not record or f not in dict(abi.HDR)}
            if record:
                assert leaf.hdr.offset == 0
                assert leaf.hdr.size == abi.STRUCTS["vigil_hdr"].size
            assert c_fields == mirror, name
            assert abi.STRUCTS[name].size == ctypes.sizeof(leaf), name
    finally:
        b.cleanup()


def test_loaded_program_emits_what_the_mirror_decodes(kernel_env: KernelEnv) -> None:
    stats = kernel_env.collector.decode_stats
    with container_cgroup(kernel_env, "vigil-test/abi") as c:
        py = (
            "import socket;from collector.dns import build_query as q;"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(q('abi.vigil.test'),('127.0.0.1',53));"
            "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.connect(('127.0.0.1',9));open('/etc/hostname')"
        )
        c.run(which("python3"), "-c", py, cwd=str(pathlib.Path(__file__).resolve().parents[2]))
    asyncio.run(wait_for(lambda: len(stats.per_op) == len(abi.REGISTRY), timeout=10))
    assert set(stats.per_op) == set(abi.REGISTRY)
    assert (stats.unknown_op, stats.short, stats.size_mismatch) == (0, 0, 0)
    assert stats.decoded > 0
    assert build_query("x.y")  # the helper the child used is importable here too
    assert socket.AF_INET == 2  # the family value the C side compares with
