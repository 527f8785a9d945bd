"""Run one target of :mod:`tests.fuzz.targets` under atheris (libFuzzer).

``python -m tests.fuzz.fuzz_<name> [libFuzzer flags] [corpus dir …]``: the
target's seeds are written into the first corpus directory (a temporary one
when none is given) so every run starts from valid inputs. Our modules are
imported inside ``atheris.instrument_imports()`` so their branches guide the
fuzzer; a property failure or an unexpected exception is a crash (exit code
non-zero, the input saved under ``-artifact_prefix``).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import atheris


def main(name: str) -> None:
    with atheris.instrument_imports(include=["contracts", "services"]):
        from tests.fuzz import targets
    check, seeds = targets.TARGETS[name]
    argv = list(sys.argv)
    dirs = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not dirs:
        dirs = [tempfile.mkdtemp(prefix=f"vigil-fuzz-{name}-")]
        argv.append(dirs[0])
    corpus = Path(dirs[0])
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    atheris.Setup(argv, check)
    atheris.Fuzz()
