"""Pure canonicalisers for behaviour keys: file paths, DNS names, network addresses.

Invariants: deterministic, no I/O; the memo caches only speed things up (a
cleared cache gives the same answers). File paths are generalised by the rules
the generated profiles share (:mod:`contracts.paths`: numbers, ids, hashes,
random and temp names → ``*``, ``/proc/<pid>`` → ``/proc/*``), so an upload's
``/tmp/phpA1b2C3`` is one behaviour (``/tmp/php*``), not a new one per file.
The learner stops there: it never takes the AppArmor generator's tree globs
(``/tmp/**``, ``<libdir>/**``), because drift detection needs the finer key —
a file written under ``/tmp`` and then executed or mapped is still new
behaviour (docs/profiles.md).
"""

from __future__ import annotations

import ipaddress

from contracts.paths import generalise

_MEMO_MAX = 65_536
_path_memo: dict[str, str] = {}
_addr_memo: dict[str, str] = {}

# open(2) flags (x86_64) and the kernel's internal exec marker seen on opens done by execve.
O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_APPEND = 0o2000
FMODE_EXEC = 0x20
READ, WRITE, EXEC = 1, 2, 4


def generalise_path(path: str) -> str:
    """``/proc/4242/status`` → ``/proc/*/status``, ``/tmp/phpA1b2C3`` → ``/tmp/php*`` (:mod:`contracts.paths`)."""
    hit = _path_memo.get(path)
    if hit is not None:
        return hit
    out = generalise(path)
    if len(_path_memo) >= _MEMO_MAX:
        _path_memo.clear()
    _path_memo[path] = out
    return out


def access_mask(flags: int) -> int:
    """r/w/x bits (READ|WRITE|EXEC) from open flags."""
    mode = flags & O_ACCMODE
    mask = READ if mode != O_WRONLY else 0
    if mode in (O_WRONLY, O_RDWR) or flags & (O_CREAT | O_TRUNC | O_APPEND):
        mask |= WRITE
    if flags & FMODE_EXEC:
        mask |= EXEC
    return mask or READ


def access_text(mask: int) -> str:
    return ("r" if mask & READ else "") + ("w" if mask & WRITE else "") + ("x" if mask & EXEC else "")


def access_mask_of(text: str) -> int:
    """The inverse of :func:`access_text`: ``"rw"`` → READ|WRITE; no letter reads as ``r``."""
    mask = (READ if "r" in text else 0) | (WRITE if "w" in text else 0) | (EXEC if "x" in text else 0)
    return mask or READ


def dns_key(name: str, depth: int) -> str:
    """The last ``depth`` labels, lower-cased, no trailing dot."""
    labels = name.rstrip(".").lower().split(".")
    return ".".join(labels[-depth:])


_CLASSES = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
]


def addr_class(addr: str) -> str:
    """Private, loopback and link-local addresses → their CIDR class; public addresses stay themselves."""
    hit = _addr_memo.get(addr)
    if hit is not None:
        return hit
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        out = addr
    else:
        out = next((str(net) for net in _CLASSES if ip.version == net.version and ip in net), str(ip))
    if len(_addr_memo) >= _MEMO_MAX:
        _addr_memo.clear()
    _addr_memo[addr] = out
    return out
