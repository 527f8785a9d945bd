"""A learned version as a Graphviz DOT graph (pure): the process lineage, behaviour as leaves.

Nodes: the version (root), one box per executable (with how many syscalls it made), one
leaf per file (``note``), DNS name (``ellipse``) and connect destination (``hexagon``).
Edges: every learned exec lineage ``a → b → c`` (its outermost ancestor hangs from the
root); an executable's files (labelled with the access learned: ``r``, ``rw``, ``rx``…),
DNS names and connects. An executable that did something but was never seen starting
(the container's first process, or one started before learning began) hangs from the
root; so does DNS the learner keyed by no executable.

Render it with Graphviz: ``vigil profiles export IMG:TAG --format dot | dot -Tsvg > p.svg``.

Invariant: the text is a function of the set of behaviours (order and duplicates change
nothing); node ids are assigned in sorted order, so equal profiles give equal bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.profiles import BehaviourAdded

ROOT = "root"
_LEAF_SHAPES = {"open": ("f", "note"), "dns": ("d", "ellipse"), "connect": ("c", "hexagon")}


@dataclass
class Graph:
    """Processes, parent → child edges and leaves (kind, label) → executable → access."""

    processes: set[str] = field(default_factory=set)
    children: set[tuple[str, str]] = field(default_factory=set)
    leaves: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    syscalls: dict[str, set[str]] = field(default_factory=dict)


def graph_of(behaviours: Iterable[BehaviourAdded]) -> Graph:
    g = Graph()
    for b in behaviours:
        if b.event_type == "exec":
            chain = list(b.lineage) or [b.behaviour]
            g.processes.update(chain)
            g.children.update(zip(chain, chain[1:], strict=False))
        elif b.event_type == "syscalls":
            g.processes.add(b.executable)
            g.syscalls.setdefault(b.executable, set()).add(b.behaviour)
        else:
            if b.executable:
                g.processes.add(b.executable)
            access = g.leaves.setdefault((b.event_type, _leaf_label(b)), {}).setdefault(b.executable, set())
            access.update(b.access)
    g.processes.discard("")
    return g


def _leaf_label(b: BehaviourAdded) -> str:
    if b.event_type == "connect":
        proto, _, rest = b.behaviour.partition(":")
        return f"{proto} {rest}"
    return b.behaviour


def quote(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _access(letters: set[str]) -> str:
    return "".join(c for c in "rwx" if c in letters)


def render(behaviours: Iterable[BehaviourAdded], image_name: str, image_tag: str) -> str:
    """The DOT text (ends with a newline)."""
    g = graph_of(behaviours)
    ids = {p: f"p{i}" for i, p in enumerate(sorted(g.processes))}
    ids[""] = ROOT
    title = f"{image_name}:{image_tag or '*'}"
    lines = [
        f"digraph {quote('vigil ' + title)} {{",
        '  graph [rankdir=LR, fontname="Helvetica", labelloc=t, label=' + quote(f"{title}: learned behaviour") + "];",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        f"  {ROOT} [shape=box3d, label={quote(title)}];",
    ]
    for path, pid in sorted(ids.items(), key=lambda kv: kv[1]):
        if path:
            count = len(g.syscalls.get(path, ()))
            label = path + (f"\n{count} syscall{'s' if count != 1 else ''}" if count else "")
            lines.append(f"  {pid} [shape=box, label={quote(label)}];")
    edges = _process_edges(g, ids)
    for n, ((kind, label), by_exe) in enumerate(sorted(g.leaves.items())):
        prefix, shape = _LEAF_SHAPES.get(kind, ("x", "plain"))
        leaf = f"{prefix}{n}"
        lines.append(f"  {leaf} [shape={shape}, label={quote(label)}];")
        for exe, letters in sorted(by_exe.items()):
            attrs = f" [label={quote(_access(letters))}]" if letters else ""
            edges.append(f"  {ids[exe]} -> {leaf}{attrs};")
    return "\n".join([*lines, *edges, "}"]) + "\n"


def _process_edges(g: Graph, ids: dict[str, str]) -> list[str]:
    """Parent → child, and root → every process no learned lineage starts."""
    started = {child for _, child in g.children}
    edges = [(ROOT, ids[p]) for p in sorted(g.processes) if p not in started]
    edges += sorted((ids[a], ids[b]) for a, b in g.children)
    return [f"  {a} -> {b};" for a, b in edges]
