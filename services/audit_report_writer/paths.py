"""Path generalisation for behaviour models and the AppArmor profile (pure, no I/O).

A profile that lists per-run values literally breaks on the next start, so
paths become AppArmor globs (``*`` inside one segment, ``**`` across
segments). The rules follow vArmor's ``trimPath``
(``internal/behavior/preprocessor/preprocessor.go``) and depend on the access
(AppArmor letters ``m r w a ix``), as vArmor's depend on the denied mask:

- read-only (no ``w``/``a``) files in a library directory → ``<dir>/**``: the
  architecture directories vArmor names (``/lib/x86_64-linux-gnu``,
  ``/usr/lib/x86_64-linux-gnu``, ``/usr/lib/aarch64-linux-gnu``) and, where
  Vigil deliberately goes further, the first level below every other library
  root (``/usr/lib/python3.11/**``, ``/lib64/**``; docs/models.md says why);
  the directory itself stays as it is;
- anything under ``/tmp/`` → ``/tmp/**`` (``/tmp/`` itself stays);
- anything under the service-account mount
  (``[/var]/run/secrets/kubernetes.io/serviceaccount/``, including the
  kubelet's dated directory that rotates) → ``<mount>/**``;
- everything else, ``/proc`` included, by the shared rules of
  :mod:`contracts.paths` (numbers, ids, hashes, random and temp names → ``*``).

Where Vigil keeps a path finer than vArmor: an executed file (``ix``) and a
file mapped executable outside the library directories (``m``) never take a
tree glob, so a profile never lets a workload execute or map whatever lands in
``/tmp`` (vArmor keeps executions literal too).

Invariants: deterministic; idempotent (``generalise(generalise(p, a), a) ==
generalise(p, a)``); never turns an absolute path into a relative one; ``/``
and the empty path are returned unchanged.
"""

from __future__ import annotations

from functools import lru_cache

from contracts import paths as shared

LIBRARY_ROOTS: tuple[str, ...] = (
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/local/lib",
)
SERVICE_ACCOUNT_DIRS: tuple[str, ...] = (
    "/run/secrets/kubernetes.io/serviceaccount",
    "/var/run/secrets/kubernetes.io/serviceaccount",
)
TEMP_TREE = "/tmp/"
EXEC = "ix"


@lru_cache(maxsize=1 << 16)  # pure: paths repeat heavily within a workload
def generalise(path: str, perms: str = "r") -> str:
    """The glob a profile should hold for ``path`` accessed with ``perms`` (see the module docstring)."""
    if not path.startswith("/") or path == "/":
        return path
    tree = _tree_glob(path, perms)
    return tree if tree is not None else shared.generalise(path)


def _tree_glob(path: str, perms: str) -> str | None:
    """``<dir>/**`` when a vArmor tree rule covers ``path`` for this access, else None."""
    if EXEC in perms:
        return None
    if "w" not in perms and "a" not in perms:
        lib = _library_glob(path)
        if lib is not None:
            return lib
    if "m" in perms:
        return None
    if path.startswith(TEMP_TREE) and path != TEMP_TREE:
        return TEMP_TREE + "**"
    for mount in SERVICE_ACCOUNT_DIRS:
        if path.startswith(mount + "/"):
            return mount + "/**"
    return None


def _library_glob(path: str) -> str | None:
    for root in sorted(LIBRARY_ROOTS, key=len, reverse=True):
        if not path.startswith(root + "/"):
            continue
        rest = path[len(root) + 1 :].split("/")
        if rest[-1] == "" and len(rest) <= 2:
            return None  # the directory itself (vArmor keeps /usr/lib/x86_64-linux-gnu/ as it is)
        if len(rest) == 1:
            return f"{root}/**"
        return f"{root}/{shared.generalise_segment(rest[0])}/**"
    return None


def is_library(path: str) -> bool:
    """True for files under a library directory (the loader maps them: AppArmor ``m``)."""
    return any(path.startswith(root + "/") for root in LIBRARY_ROOTS)
