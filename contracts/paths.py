"""How a file path becomes a behaviour key: the rules the learner and the generated profiles share (pure).

A path a workload opens often carries values that differ per run or per
replica: process ids, numbers, UUIDs, hashes and build ids, random temp
names. The learner keys file behaviour by the generalised path
(``services/profile_learner/paths.py``: one behaviour per upload, not one per
temp file) and the generated AppArmor profile holds it
(``services/audit_report_writer/paths.py``, which adds vArmor's tree rules on
top). This module is the one place that says what "random" means, so the two
agree. vArmor asks a classifier service (``varmor-classifier``: RANDOM_STRING,
NUMERIC, UUID, IP, JWT → ``*``); this is a documented, deterministic rule on
character classes, length and entropy instead, with nothing to download.

Under ``/proc`` (vArmor's ``trimPath``): every numeric segment becomes ``*``
and whatever follows ``/map_files/`` becomes ``*``; nothing else changes.

Elsewhere, segment by segment:

- a segment that is a number, or that has no letter and at least 8 digits (a
  timestamp, the kubelet's dated ``..2024_01_04_18_02_26.3917466241``), → ``*``;
- under a temp directory (:data:`TEMP_DIRS`), the temp-name templates of the
  common generators keep their prefix and lose the random part, whatever
  characters it drew: ``php`` + 6 of ``[A-Za-z0-9]`` (PHP uploads, through
  mkstemp), ``tmp.`` + 10 of ``[A-Za-z0-9]`` (mktemp(1)), ``tmp`` + 8 of
  ``[a-z0-9_]`` (Python ``tempfile``), ``cc`` + 6 (gcc), each with an
  optional extension: ``php*``, ``tmp.*``, ``tmp*``, ``cc*.s``;
- inside a segment: a UUID (dashes or underscores); a hex id of 12+
  characters holding a digit and a letter (hashes, container, image and build
  ids); a run of 6+ digits, or 5 standing alone (Java's and Go's temp names,
  dates) → ``*``;
- then each token between ``.``, ``-`` and ``_`` that looks generated →
  ``*`` (:func:`is_random_token`): 6+ ASCII letters and digits, both present,
  whose classes alternate at least 4 times (3 with mixed case), or, for 16+
  characters with 2+ digits and 2+ alternations, a Shannon entropy of at least
  3.5 bits per character.

Words stay words: ``/etc/nginx/conf.d/default.conf``,
``/usr/share/zoneinfo/Europe/Berlin``, ``utf8mb4``, ``x86_64``, ``v1beta1``,
``python3.11``. Fixed parts around a random token stay too (``app-*.log``,
``php*``), where vArmor's classifier replaces the whole segment: a finer key
that still absorbs the randomness.

Invariants: deterministic, no I/O; idempotent (``generalise(generalise(p)) ==
generalise(p)``); the number of ``/`` is kept; relative paths, ``/`` and the
empty path are returned unchanged.
"""

from __future__ import annotations

import math
import re
from collections import Counter

TEMP_DIRS: tuple[str, ...] = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/")

# with dashes or underscores (undashed, it is a hex id)
_UUID = re.compile(r"[0-9a-fA-F]{8}([-_])[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}")
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{12,}(?![0-9A-Za-z])")
_DIGITS = re.compile(r"[0-9]{6,}|(?<![0-9A-Za-z])[0-9]{5}(?![0-9A-Za-z])")
_TOKEN_SPLIT = re.compile(r"([._-])")
_EXTENSION = r"(?P<ext>\.[A-Za-z0-9]{1,8})?"
_TEMP_TEMPLATES = (  # (generator, pattern): the prefix is kept, the random part becomes *
    ("PHP upload (mkstemp phpXXXXXX)", re.compile(r"(?P<prefix>php)[A-Za-z0-9]{6}" + _EXTENSION)),
    ("mktemp(1) tmp.XXXXXXXXXX", re.compile(r"(?P<prefix>tmp\.)[A-Za-z0-9]{10}" + _EXTENSION)),
    ("Python tempfile", re.compile(r"(?P<prefix>tmp)[a-z0-9_]{8}" + _EXTENSION)),
    ("gcc ccXXXXXX", re.compile(r"(?P<prefix>cc)[A-Za-z0-9]{6}" + _EXTENSION)),
)
MIN_ENTROPY_BITS = 3.5


def generalise(path: str) -> str:
    """``path`` with its run- and replica-specific parts as ``*`` (the module docstring's rules)."""
    if not path.startswith("/") or path == "/":
        return path
    if path == "/proc" or path.startswith("/proc/"):
        return generalise_proc(path)
    in_temp = path.startswith(TEMP_DIRS)
    return "/".join(generalise_segment(s, in_temp) for s in path.split("/"))


def generalise_proc(path: str) -> str:
    """vArmor's ``/proc`` rule: numeric segments and everything after ``/map_files/`` → ``*``."""
    head, sep, _ = path.partition("/map_files/")
    head = "/".join("*" if s.isdigit() else s for s in head.split("/"))
    return head + "/map_files/*" if sep else head


def generalise_segment(segment: str, in_temp: bool = False) -> str:
    """One path segment (see the module docstring); ``in_temp``: the segment is under a temp directory."""
    if segment in ("", "*", "**"):
        return segment
    if segment.isdigit() or _number_dominated(segment):
        return "*"
    if in_temp:
        templated = temp_template(segment)
        if templated is not None:
            return templated
    segment = _UUID.sub("*", segment)
    segment = _HEX_ID.sub("*", segment)
    segment = _DIGITS.sub("*", segment)
    parts = ["*" if is_random_token(p) else p for p in _TOKEN_SPLIT.split(segment)]
    return _collapse_stars("".join(parts))


def temp_template(segment: str) -> str | None:
    """``php*`` for ``phpA1b2C3`` and the other templates of :data:`_TEMP_TEMPLATES`; None otherwise."""
    for _, pattern in _TEMP_TEMPLATES:
        m = pattern.fullmatch(segment)
        if m is not None:
            return f"{m['prefix']}*{m['ext'] or ''}"
    return None


def is_random_token(token: str) -> bool:
    """A generated name rather than a word (see the module docstring for the rule)."""
    n = len(token)
    if n < 6 or not token.isascii() or not token.isalnum():
        return False
    digits = sum(c.isdigit() for c in token)
    if digits == 0 or digits == n:
        return False
    alternations = sum(1 for a, b in zip(token, token[1:], strict=False) if a.isdigit() != b.isdigit())
    mixed_case = token.lower() != token and token.upper() != token
    if alternations >= 4 or (alternations >= 3 and mixed_case):
        return True
    return n >= 16 and digits >= 2 and alternations >= 2 and entropy(token) >= MIN_ENTROPY_BITS


def entropy(token: str) -> float:
    """Shannon entropy of the token's characters, in bits per character."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


def _number_dominated(segment: str) -> bool:
    return not any(c.isalpha() for c in segment) and sum(c.isdigit() for c in segment) >= 8


def _collapse_stars(segment: str) -> str:
    """``*-*`` stays; ``**`` inside one segment (two adjacent replacements) becomes ``*``."""
    while "**" in segment:
        segment = segment.replace("**", "*")
    return segment
