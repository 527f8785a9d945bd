"""The lineage graph (DOT) of a learned version: golden text, every learned lineage as a chain of
edges from the root, files/DNS/connects as leaves of the executable that did them, the same bytes
whatever the order or repetition of the behaviours, and quoting that keeps DOT parseable."""

from __future__ import annotations

import random
import re
import shutil
import subprocess

import pytest

from contracts.profiles import BehaviourAdded
from services.audit_report_writer import lineage
from tests.unit.golden import assert_golden
from tests.unit.golden.behaviour import T0, seed_behaviour


def seed() -> list[BehaviourAdded]:
    return [e for e in seed_behaviour() if e.image_tag == "10"]


def parse(text: str) -> tuple[dict[str, str], set[tuple[str, str, str]]]:
    """Node id -> label, and (from label, to label, edge label) edges."""
    labels = {m[1]: m[2] for m in re.finditer(r'^  (\w+) \[shape=\w+, label="((?:[^"\\]|\\.)*)"\];$', text, re.M)}
    labels = {k: v.split("\\n")[0] for k, v in labels.items()}
    edges = set()
    for m in re.finditer(r'^  (\w+) -> (\w+)(?: \[label="(\w*)"\])?;$', text, re.M):
        edges.add((labels[m[1]], labels[m[2]], m[3] or ""))
    return labels, edges


def test_seed_graph_golden() -> None:
    assert_golden("lineage_seed.dot", lineage.render(seed(), "debian", "10"))


def test_every_lineage_is_a_chain_from_the_root_and_behaviour_hangs_from_its_executable() -> None:
    _, edges = parse(lineage.render(seed(), "debian", "10"))
    for b in seed():
        if b.event_type == "exec":
            chain = ["debian:10", *b.lineage]
            for parent, child in zip(chain, chain[1:], strict=False):
                assert (parent, child, "") in edges, (parent, child)
    assert ("/usr/bin/id", "/etc/passwd", "r") in edges
    assert ("/usr/bin/bash", "/dev/tty", "rw") in edges
    assert ("/usr/bin/cat", "/root/c1", "r") in edges and ("/usr/bin/bash", "/root/c1", "w") in edges
    assert ("/usr/bin/bash", "tcp 10.0.0.0/8:443", "") in edges
    assert ("/usr/bin/bash", "example.com", "") in edges
    assert ("debian:10", "/usr/bin/cat", "") in edges  # opened files but was never seen starting


def added(event_type: str, behaviour: str, **kw: str) -> BehaviourAdded:
    return BehaviourAdded(
        id="x", time=T0, image_name="i", image_tag="1", event_type=event_type, behaviour=behaviour, **kw
    )  # type: ignore[arg-type]


def test_dns_learned_by_no_executable_hangs_from_the_root() -> None:
    _, edges = parse(lineage.render([added("dns", "a.io")], "i", "1"))
    assert edges == {("i:1", "a.io", "")}


def test_order_and_repetition_change_nothing() -> None:
    behaviours = seed()
    shuffled = [*behaviours, *behaviours[:10]]
    random.Random(7).shuffle(shuffled)
    assert lineage.render(shuffled, "debian", "10") == lineage.render(behaviours, "debian", "10")


def test_labels_are_quoted() -> None:
    odd = added("open", '/tmp/a "b"\\c', executable="/bin/x", access="r")
    text = lineage.render([odd], "i", "1")
    assert '[shape=note, label="/tmp/a \\"b\\"\\\\c"];' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (dot) is not installed")
def test_graphviz_reads_it() -> None:
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=lineage.render(seed(), "debian", "10"), capture_output=True, text=True, check=True
    )
    assert "<svg" in svg.stdout
