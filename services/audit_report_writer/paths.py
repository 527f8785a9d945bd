"""Path generalisation for behaviour models (pure, no I/O).

A learned path often carries values that differ per run or per replica: pids,
numbers, UUIDs, random temp names, container snapshot ids. A profile that
lists them literally would break on the next start, so they become AppArmor
globs (``*`` inside one segment, ``**`` across segments):

- ``/proc/<pid>/…`` and ``/proc/<pid>/task/<tid>/…`` → ``/proc/*/…``
- a whole numeric segment → ``*``; a run of 5+ digits inside a segment → ``*``
- a UUID anywhere in a segment → ``*``
- a long hex id (12+ hex chars, overlay/docker/containerd ids) → ``*``
- a random-looking token (letters and digits interleaved, or Python/mktemp
  temp names) → ``*``
- a file under a library directory → ``<libdir>[/<first subdir>]/**``

Invariants: deterministic; idempotent (``generalise(generalise(p)) ==
generalise(p)``); never turns an absolute path into a relative one; ``/`` and
the empty path are returned unchanged.
"""

from __future__ import annotations

import re
from functools import lru_cache

LIBRARY_ROOTS: tuple[str, ...] = (
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/local/lib",
)

_UUID = re.compile(r"[0-9a-fA-F]{8}([-_]?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}")
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{12,}(?![0-9A-Za-z])")
_LONG_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{5,}(?![0-9A-Za-z])")
_TEMP_NAME = re.compile(r"^tmp[._]?([A-Za-z0-9_]{6,})$")
_TOKEN_SPLIT = re.compile(r"([._-])")


def _is_random_token(token: str) -> bool:
    """Letters and digits interleaved like a generated name (``Q2xk8P``, ``k2j3h4g5``)."""
    if len(token) < 6 or not token.isalnum() or token.isalpha() or token.isdigit():
        return False
    transitions = sum(1 for a, b in zip(token, token[1:], strict=False) if a.isdigit() != b.isdigit())
    mixed_case = token.lower() != token and token.upper() != token
    return transitions >= 4 or (transitions >= 3 and mixed_case)


def _is_temp_name(segment: str) -> bool:
    """Python's ``tmpq8x_6zbl`` and mktemp's ``tmp.Q2xk8PzA1b``: random tail with a digit, ``_`` or mixed case."""
    m = _TEMP_NAME.match(segment)
    if m is None:
        return False
    tail = m.group(1)
    mixed_case = tail.lower() != tail and tail.upper() != tail
    return mixed_case or any(c.isdigit() or c == "_" for c in tail)


def _generalise_segment(segment: str) -> str:
    if segment in ("", "*", "**"):
        return segment
    if segment.isdigit():
        return "*"
    if _is_temp_name(segment):
        return "tmp*"
    segment = _UUID.sub("*", segment)
    segment = _HEX_ID.sub("*", segment)
    segment = _LONG_NUMBER.sub("*", segment)
    parts = _TOKEN_SPLIT.split(segment)
    parts = ["*" if _is_random_token(p) else p for p in parts]
    return _collapse_stars("".join(parts))


def _collapse_stars(segment: str) -> str:
    """``*-*`` stays; ``**`` inside one segment (two adjacent replacements) becomes ``*``."""
    while "**" in segment:
        segment = segment.replace("**", "*")
    return segment


def _library_glob(path: str) -> str | None:
    for root in sorted(LIBRARY_ROOTS, key=len, reverse=True):
        if not path.startswith(root + "/"):
            continue
        rest = path[len(root) + 1 :].split("/")
        if len(rest) == 1:
            return f"{root}/**"
        return f"{root}/{_generalise_segment(rest[0])}/**"
    return None


@lru_cache(maxsize=1 << 16)  # pure: paths repeat heavily within a workload
def generalise(path: str) -> str:
    """The glob a profile should hold for ``path`` (see the module docstring)."""
    if not path.startswith("/") or path == "/":
        return path
    lib = _library_glob(path)
    if lib is not None:
        return lib
    segments = path.split("/")
    if len(segments) > 2 and segments[1] == "proc" and (segments[2].isdigit() or segments[2] == "*"):
        segments[2] = "*"
        if len(segments) > 4 and segments[3] == "task":
            segments[4] = "*"
    return "/".join(_generalise_segment(s) for s in segments)


def is_library(path: str) -> bool:
    """True for files under a library directory (the loader maps them: AppArmor ``m``)."""
    return any(path.startswith(root + "/") for root in LIBRARY_ROOTS)
