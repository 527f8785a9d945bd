"""Network policies from learned egress: golden NetworkPolicy and CiliumNetworkPolicy, validated
offline against the Kubernetes schema (kubernetes-validate, strict) and against a subset of
Cilium's published CRD schema (tests/unit/schemas/, which cites its source); each address class
the learner records maps to its own block (never a narrower one); the pod selector from the
workload registry's labels, or a placeholder.

Facts ported from Inspektor Gadget (inspektor-gadget/inspektor-gadget
pkg/operators/generate_networkpolicy/generate_networkpolicy.go and cilium_networkpolicy.go
@ aeac857bd9791c2ac5ce3e9e669be04634f385e7): the labels to ignore, no rule for loopback, an
address as a /32, one peer's ports in one Cilium rule as strings."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.models import BehaviourModel
from contracts.profiles import BehaviourAdded
from contracts.workloads import Workload
from services.audit_report_writer import modeling, netpol
from services.profile_learner import paths
from tests.unit.golden import assert_golden
from tests.unit.golden.behaviour import SEC, T0

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is not installed"
)
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (kubernetes-validate's dependency) is missing")

KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CILIUM_CRD = Path(__file__).parent / "schemas" / "cilium-ciliumnetworkpolicies-v2-subset.yaml"
IMAGE, TAG = "registry:5000/shop/web", "2.0"

# Destinations as the learner keys them (paths.addr_class), one of each kind.
CONNECTS = [
    ("tcp", "10.1.2.3", 5432),
    ("tcp", "10.96.0.1", 443),
    ("tcp", "172.20.0.5", 6379),
    ("tcp", "192.168.1.10", 8080),
    ("tcp", "100.64.3.4", 9090),
    ("tcp", "fd00::1", 50051),
    ("tcp", "169.254.169.254", 80),
    ("tcp", "fe80::1", 22),
    ("tcp", "93.184.216.34", 443),
    ("udp", "1.1.1.1", 123),
    ("tcp", "2606:2800:220:1:248:1893:25c8:1946", 443),
    ("tcp", "::ffff:198.51.100.7", 8443),  # IPv4-mapped: the learner keeps the IPv6 form
    ("tcp", "127.0.0.1", 8125),
    ("tcp", "::1", 9000),
    ("unix", "", 0),
]
NAMES = ["api.github.com", "example.com", "www.a.example.com", "svc.cluster.local", "bad name!"]


def network_behaviour() -> list[BehaviourAdded]:
    def added(i: int, event_type: str, behaviour: str) -> BehaviourAdded:
        return BehaviourAdded(
            id=f"n{i}",
            time=T0 + i * SEC,
            image_name=IMAGE,
            image_tag=TAG,
            event_type=event_type,  # type: ignore[arg-type]
            behaviour=behaviour,
            executable="/usr/sbin/nginx" if event_type == "connect" else "",
        )

    keys = [f"{proto}:{paths.addr_class(addr)}:{port}" for proto, addr, port in CONNECTS]
    names = [paths.dns_key(n, 3) for n in NAMES]
    return [added(i, "connect", k) for i, k in enumerate(keys)] + [
        added(100 + i, "dns", n) for i, n in enumerate(names)
    ]


def network_model() -> BehaviourModel:
    return modeling.model_of_learned(network_behaviour(), IMAGE, TAG)


def workloads() -> list[Workload]:
    """Two replicas in namespace shop (labels as a CRI runtime reports them) and another image."""
    kubelet = {"io.kubernetes.pod.namespace": "shop", "io.kubernetes.container.name": "web"}
    return [
        Workload(
            container_id="a" * 64,
            image_name=IMAGE,
            image_tag=TAG,
            namespace="shop",
            labels={
                **kubelet,
                "io.kubernetes.pod.name": "web-7d9c-1",
                "io.kubernetes.pod.uid": "u1",
                "app": "web",
                "tier": "front",
                "pod-template-hash": "7d9c",
            },
        ),
        Workload(
            container_id="b" * 64,
            image_name=IMAGE,
            image_tag=TAG,
            namespace="shop",
            labels={**kubelet, "io.kubernetes.pod.name": "web-7d9c-2", "app": "web", "tier": "front", "canary": "yes"},
        ),
        Workload(container_id="c" * 64, image_name=IMAGE, image_tag="1.9", namespace="shop", labels={"app": "old"}),
    ]


def web_selection() -> netpol.Selection:
    return netpol.selection(IMAGE, TAG, workloads())


def documents(text: str) -> dict[str, Any]:
    [doc] = [d for d in yaml.safe_load_all(text) if d]
    return doc


# --- validators ---------------------------------------------------------------------------------


def validate_kubernetes(doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def _closed(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties (not inside the
    oneOf/anyOf branches, which only say which field is required)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("oneOf", "anyOf") else _closed(v)) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
        out["additionalProperties"] = False
    return out


def cilium_validator() -> Any:
    crd = yaml.safe_load(CILIUM_CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v2"]
    checker = jsonschema.FormatChecker()
    checker.checks("cidr", raises=ValueError)(lambda value: bool(ipaddress.ip_network(value)))
    return jsonschema.Draft7Validator(_closed(version["schema"]["openAPIV3Schema"]), format_checker=checker)


def validate_cilium(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "cilium.io/v2" and doc["kind"] == "CiliumNetworkPolicy"
    cilium_validator().validate(doc)


# --- golden output, schema-valid ----------------------------------------------------------------


def test_networkpolicy_golden_and_valid() -> None:
    text = netpol.render_networkpolicy(network_model(), web_selection(), dns_depth=3)
    assert_golden("networkpolicy_web.yaml", text)
    validate_kubernetes(documents(text))


def test_ciliumnetworkpolicy_golden_and_valid() -> None:
    text = netpol.render_ciliumnetworkpolicy(network_model(), web_selection(), dns_depth=3)
    assert_golden("ciliumnetworkpolicy_web.yaml", text)
    validate_cilium(documents(text))


def test_validators_refuse_a_misplaced_field() -> None:
    np = documents(netpol.render_networkpolicy(network_model(), web_selection()))
    np["spec"]["egress"][0]["toPorts"] = np["spec"]["egress"][0].pop("ports")  # Cilium's name, not Kubernetes'
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(np, KUBERNETES_VERSIONS[0], strict=True)
    cnp = documents(netpol.render_ciliumnetworkpolicy(network_model(), web_selection()))
    for broken in (
        {"toFQDN": [{"matchName": "x.io"}]},  # misspelt field
        {"toFQDNs": [{"matchName": "bad name!"}]},  # not a DNS name
        {"toPorts": [{"ports": [{"port": "80", "protocol": "ICMP"}]}]},  # not a protocol Cilium filters
        {"toCIDR": ["10.0.0.0/33"]},  # not a CIDR
    ):
        cnp["spec"]["egress"] = [broken]
        with pytest.raises(jsonschema.ValidationError):
            validate_cilium(cnp)


def test_seed_with_a_placeholder_selector_is_valid_too() -> None:
    model = BehaviourModel(profile_name="p", image_name="Shop_Web", image_tag="V1+build")
    sel = netpol.selection("Shop_Web", "V1+build", [])
    np = documents(netpol.render_networkpolicy(model, sel))
    cnp = documents(netpol.render_ciliumnetworkpolicy(model, sel))
    validate_kubernetes(np)
    validate_cilium(cnp)
    assert np["spec"]["egress"] == [] and np["spec"]["policyTypes"] == ["Egress"]  # nothing learned: no egress
    assert np["metadata"]["name"] == "vigil-shop-web-v1-build"  # a DNS subdomain


# --- what the rules say -----------------------------------------------------------------------------


def rules_by_peer(doc: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for rule in doc["spec"]["egress"]:
        for peer in rule["to"]:
            key = peer["ipBlock"]["cidr"] if "ipBlock" in peer else yaml.safe_dump(peer, sort_keys=True).strip()
            out[key] = [(p["protocol"], p["port"]) for p in rule["ports"]]
    return out


def test_every_class_the_learner_records_is_its_own_block_and_loopback_has_no_rule() -> None:
    for net in paths._CLASSES:
        sample = str(next(net.hosts())) if net.num_addresses > 1 else str(net.network_address)
        key = paths.addr_class(sample)
        model = BehaviourModel(profile_name="p", image_name="i", network=_egress([("tcp", key, 7)]))
        eg = netpol.classify(model)
        if net.is_loopback:
            assert not eg.blocks and "loopback" in eg.notes[0]
        else:
            assert list(eg.blocks) == [net], (net, eg.blocks)


def test_single_addresses_stay_single_and_private_ports_reach_in_cluster_peers() -> None:
    peers = rules_by_peer(documents(netpol.render_networkpolicy(network_model(), web_selection())))
    assert peers["93.184.216.34/32"] == [("TCP", 443)]
    assert peers["2606:2800:220:1:248:1893:25c8:1946/128"] == [("TCP", 443)]
    assert peers["198.51.100.7/32"] == [("TCP", 8443)]  # IPv4-mapped → IPv4
    assert peers["10.0.0.0/8"] == [("TCP", 443), ("TCP", 5432)]  # one rule per block, sorted
    assert peers["namespaceSelector: {}"] == [("TCP", p) for p in (443, 5432, 6379, 8080, 9090, 50051)]
    assert not any(k.startswith(("127.", "::1/")) for k in peers)
    assert ("TCP", 80) not in peers["namespaceSelector: {}"]  # link-local is never a pod


def test_cilium_names_exact_below_the_depth_subdomains_at_it() -> None:
    cnp = documents(netpol.render_ciliumnetworkpolicy(network_model(), web_selection(), dns_depth=3))
    resolver, fqdns = cnp["spec"]["egress"][:2]
    want = [
        {"matchName": "a.example.com"},
        {"matchPattern": "**.a.example.com"},  # learned from www.a.example.com: cut at 3 labels
        {"matchName": "api.github.com"},
        {"matchPattern": "**.api.github.com"},
        {"matchName": "example.com"},  # 2 labels: exactly what was asked
        {"matchName": "svc.cluster.local"},
        {"matchPattern": "**.svc.cluster.local"},
    ]
    assert resolver["toPorts"][0]["rules"]["dns"] == want
    assert fqdns["toFQDNs"] == want
    public = [(p["protocol"], p["port"]) for p in fqdns["toPorts"][0]["ports"]]
    assert public == [("TCP", "443"), ("TCP", "8443"), ("UDP", "123")]  # only ports towards public addresses


def test_no_public_destination_means_no_tofqdns() -> None:
    model = BehaviourModel(profile_name="p", image_name="i", network=_egress([("tcp", "10.0.0.0/8", 53)], ["a.io"]))
    cnp = documents(netpol.render_ciliumnetworkpolicy(model, netpol.selection("i", "latest", [])))
    assert not any("toFQDNs" in rule for rule in cnp["spec"]["egress"])
    validate_cilium(cnp)


def test_what_gets_no_rule_is_said_in_comments() -> None:
    text = netpol.render_networkpolicy(network_model(), web_selection())
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("unix (no address): not IP egress" in line for line in header)
    assert any("tcp 127.0.0.0/8:8125: loopback" in line for line in header)
    assert any("'bad name!'" in line for line in header)


# --- selection --------------------------------------------------------------------------------------


def test_selection_is_the_pod_labels_the_image_tag_containers_share() -> None:
    sel = web_selection()
    assert dict(sel.labels) == {"app": "web", "tier": "front"}  # no kubelet keys, no pod-template-hash
    assert (sel.namespace, sel.placeholder, sel.containers) == ("shop", False, 2)


def test_selection_falls_back_to_a_placeholder() -> None:
    only_runtime = [
        Workload(container_id="d" * 64, image_name="web", image_tag="latest", labels={"io.kubernetes.pod.uid": "u"})
    ]
    for registered in ([], only_runtime):
        sel = netpol.selection("web", "latest", registered)
        assert sel.placeholder and dict(sel.labels) == {"app.kubernetes.io/name": "web"}
    text = netpol.render_networkpolicy(BehaviourModel(profile_name="p", image_name="web"), sel)
    assert "# PLACEHOLDER selector app.kubernetes.io/name=web" in text


def test_labels_kubernetes_would_refuse_are_left_out() -> None:
    assert netpol.pod_labels({"app": "ok", "bad key!": "x", "long": "v" * 64, "example.com/team": "a"}) == {
        "app": "ok",
        "example.com/team": "a",
    }


def _egress(rules: list[tuple[str, str, int]], names: list[str] = ()) -> Any:  # type: ignore[assignment]
    from contracts.models import EgressRule, NameRule, Network

    return Network(
        egress=[EgressRule(proto=p, addr=a, port=port) for p, a, port in rules], dns=[NameRule(name=n) for n in names]
    )
