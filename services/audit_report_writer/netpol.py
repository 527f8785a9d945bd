"""Kubernetes NetworkPolicy and CiliumNetworkPolicy (egress) from a behaviour model (pure).

What the profile knows becomes allow rules, and nothing more precise than it knows:

- a connect key's address is either an address the learner kept (a public one: ``/32`` or
  ``/128``) or the CIDR class it recorded instead (``10.0.0.0/8``, ``172.16.0.0/12``,
  ``192.168.0.0/16``, ``100.64.0.0/10``, ``169.254.0.0/16``, ``fc00::/7``, ``fe80::/10``:
  see :func:`services.profile_learner.paths.addr_class`); the rule names exactly that block;
- loopback (``127.0.0.0/8``, ``::1``, ``0.0.0.0``) gets no rule: pod-local traffic is never
  subject to a network policy; unix sockets and ports outside 1-65535 are not IP egress; each
  of these is listed in a comment instead;
- a private or CGNAT block may hold pods and services, which Cilium's CIDR rules never match
  (and other plugins may not): the ports used towards those blocks are also allowed towards
  in-cluster peers (``namespaceSelector: {}``; Cilium's ``cluster`` entity);
- DNS learned → egress to the cluster resolver (``kube-system``, ``k8s-app: kube-dns``) on 53;
  Cilium also gets ``toFQDNs`` and DNS rules from the learned names: a name shorter than
  ``dns_match_max_depth`` labels is exact (``matchName``); a name that long may have been cut
  by the learner, so its subdomains are allowed too (``matchPattern: "**.<name>"``). Names
  are used on the ports learned towards public addresses (``toFQDNs`` never matches
  in-cluster addresses); with no such port there is no ``toFQDNs`` rule.
- Vigil learns no ingress: the policies are egress only (``policyTypes: [Egress]``;
  Cilium ``enableDefaultDeny: {egress: true, ingress: false}``).

Facts ported from Inspektor Gadget's ``advise networkpolicy``
(``pkg/operators/generate_networkpolicy/{generate_networkpolicy,cilium_networkpolicy}.go``
@ aeac857bd9791c2ac5ce3e9e669be04634f385e7): pod selector labels minus those that change per
rollout or per node; no rule for loopback; an address is a ``/32`` block; rules sorted by
protocol then port; Cilium groups one peer's ports in one rule, port numbers as strings.

Invariant: the text is a function of the model, the selection and the depth (sorted, stable).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from contracts.models import BehaviourModel
from contracts.workloads import DEFAULT_TAG, Workload

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Port = tuple[str, int]  # (protocol, port)

PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}
LOOPBACK = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128")]
IN_CLUSTER = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]
LINK_LOCAL = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10")]

# The cluster resolver as kubeadm, kOps, EKS, GKE and AKS label CoreDNS / kube-dns.
DNS_NAMESPACE = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
PLACEHOLDER_KEY = "app.kubernetes.io/name"

# Labels that change per rollout or per node (Inspektor Gadget's defaultLabelsToIgnore).
ROLLOUT_LABELS = frozenset(
    {
        "controller-revision-hash",
        "pod-template-generation",
        "pod-template-hash",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    }
)
# Keys a runtime puts on containers for itself (the kubelet's pod name/uid/namespace, containerd's
# namespace, image metadata, cri-dockerd's copies of annotations): never a pod's own labels.
RUNTIME_PREFIXES = (
    "io.kubernetes.",
    "io.containerd.",
    "io.cri-containerd.",
    "io.podman.",
    "io.buildah.",
    "com.docker.",
    "org.opencontainers.",
    "org.label-schema.",
    "annotation.",
)
RUNTIME_KEYS = frozenset({"maintainer"})

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_FQDN = re.compile(r"^[-a-zA-Z0-9_]+(\.[-a-zA-Z0-9_]+)*\.?$")  # Cilium's matchName pattern, linear


@dataclass(frozen=True)
class Selection:
    """Which pods a policy selects: the labels common to the image's containers, or a placeholder."""

    labels: Mapping[str, str]
    namespace: str = ""
    placeholder: bool = False
    containers: int = 0  # how many registered containers of the image:tag the labels come from


@dataclass
class Egress:
    """The model's egress, sorted into what a policy can name."""

    blocks: dict[Network, set[Port]] = field(default_factory=dict)
    in_cluster: set[Port] = field(default_factory=set)  # ports used towards blocks that may hold pods
    public: set[Port] = field(default_factory=set)  # ports used towards public addresses
    resolver: bool = False  # DNS was learned: the workload needs the cluster resolver
    names: list[str] = field(default_factory=list)  # learned DNS names a policy can name
    notes: list[str] = field(default_factory=list)  # what got no rule, and why


# --- selection --------------------------------------------------------------------------------


def valid_label(key: str, value: str) -> bool:
    """A Kubernetes label: ``[prefix/]name`` (prefix a DNS subdomain) and a value of at most 63 characters."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name)) and (value == "" or bool(_LABEL_NAME.match(value)))


def pod_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that identify a workload: no runtime bookkeeping, nothing that changes per rollout or node."""
    return {
        k: v
        for k, v in labels.items()
        if k not in ROLLOUT_LABELS
        and k not in RUNTIME_KEYS
        and not k.startswith(RUNTIME_PREFIXES)
        and valid_label(k, v)
    }


def short_name(image_name: str) -> str:
    """The last path segment of an image name as a label value (``registry:5000/shop/web`` → ``web``)."""
    raw = re.sub(r"[^A-Za-z0-9_.-]+", "-", image_name.rsplit("/", 1)[-1])
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", raw[:63]) or "workload"


def selection(image_name: str, image_tag: str, workloads: Iterable[Workload]) -> Selection:
    """The labels common to every registered container of ``image_name:image_tag`` (their pod
    labels only); none in common, or no container: a placeholder ``app.kubernetes.io/name``."""
    mine = [w for w in workloads if w.image_name == image_name and (w.image_tag or DEFAULT_TAG) == image_tag]
    namespaces = {w.namespace for w in mine if w.namespace}
    namespace = namespaces.pop() if len(namespaces) == 1 else ""
    common: dict[str, str] | None = None
    for w in mine:
        own = pod_labels(w.labels)
        common = own if common is None else {k: v for k, v in common.items() if own.get(k) == v}
    if common:
        return Selection(labels=dict(sorted(common.items())), namespace=namespace, containers=len(mine))
    placeholder = {PLACEHOLDER_KEY: short_name(image_name)}
    return Selection(labels=placeholder, namespace=namespace, placeholder=True, containers=len(mine))


# --- egress -------------------------------------------------------------------------------------


def block_of(addr: str) -> Network | None:
    """The block an address or CIDR class names (an IPv4-mapped IPv6 address is its IPv4 /32)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        try:
            return ipaddress.ip_network(addr, strict=False)
        except ValueError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ipaddress.ip_network(ip)


def _within(block: Network, nets: list[Any]) -> bool:
    return any(block.version == net.version and block.subnet_of(net) for net in nets)


def classify(model: BehaviourModel) -> Egress:
    """Sort the model's egress and DNS names into blocks, in-cluster and public ports, and notes."""
    eg = Egress()
    for rule in model.network.egress:
        what = f"{rule.proto} {rule.addr}:{rule.port}" if rule.addr else f"{rule.proto} (no address)"
        proto, block = PROTOCOLS.get(rule.proto), block_of(rule.addr)
        if proto is None or block is None:
            eg.notes.append(f"{what}: not IP egress")
        elif not 0 < rule.port < 65536:
            eg.notes.append(f"{what}: no port a policy can name")
        elif _within(block, LOOPBACK):
            eg.notes.append(f"{what}: loopback, pod-local (never subject to a network policy)")
        else:
            eg.blocks.setdefault(block, set()).add((proto, rule.port))
            if _within(block, IN_CLUSTER):
                eg.in_cluster.add((proto, rule.port))
            elif not _within(block, LINK_LOCAL):
                eg.public.add((proto, rule.port))
    eg.resolver = bool(model.network.dns)
    for dns in model.network.dns:
        name = dns.name.rstrip(".").lower()
        if _FQDN.match(name) and len(name) <= 250:
            eg.names.append(name)
        else:
            eg.notes.append(f"dns {dns.name!r}: not a name a policy can match")
    eg.names = sorted(set(eg.names))
    return eg


def name_rules(names: Iterable[str], dns_depth: int) -> list[dict[str, str]]:
    """Cilium DNS selectors: exact below ``dns_depth`` labels; at the depth the learner may have
    cut the name, so its subdomains match too."""
    rules: list[dict[str, str]] = []
    for name in names:
        rules.append({"matchName": name})
        if name.count(".") + 1 >= dns_depth:
            rules.append({"matchPattern": f"**.{name}"})
    return rules


def _sorted_ports(ports: Iterable[Port]) -> list[Port]:
    return sorted(set(ports))


def _block_key(block: Network) -> tuple[int, int, int]:
    return block.version, int(block.network_address), block.prefixlen


# --- documents ------------------------------------------------------------------------------------


def policy_name(image_name: str, image_tag: str) -> str:
    """``vigil-<image short name>-<tag>`` as a Kubernetes object name (a DNS subdomain)."""
    raw = f"vigil-{short_name(image_name)}-{image_tag or 'any'}".lower()
    return re.sub(r"[^a-z0-9]+$", "", re.sub(r"[^a-z0-9.-]+", "-", raw))[:253]


def _metadata(model: BehaviourModel, sel: Selection) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": policy_name(model.image_name, model.image_tag)}
    if sel.namespace:
        meta["namespace"] = sel.namespace
    meta["labels"] = {"app.kubernetes.io/managed-by": "vigil"}
    meta["annotations"] = {"vigil.dev/profile": f"{model.image_name}:{model.image_tag or '*'}"}
    return meta


def networkpolicy(model: BehaviourModel, sel: Selection, eg: Egress) -> dict[str, Any]:
    """A ``networking.k8s.io/v1`` NetworkPolicy: resolver, in-cluster peers, then blocks by address."""

    def ports(items: Iterable[Port]) -> list[dict[str, Any]]:
        return [{"port": port, "protocol": proto} for proto, port in _sorted_ports(items)]

    rules: list[dict[str, Any]] = []
    if eg.resolver:
        resolver = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DNS_NAMESPACE}},
            "podSelector": {"matchLabels": dict(DNS_LABELS)},
        }
        rules.append({"to": [resolver], "ports": ports([("UDP", 53), ("TCP", 53)])})
    if eg.in_cluster:
        rules.append({"to": [{"namespaceSelector": {}}], "ports": ports(eg.in_cluster)})
    for block in sorted(eg.blocks, key=_block_key):
        rules.append({"to": [{"ipBlock": {"cidr": str(block)}}], "ports": ports(eg.blocks[block])})
    spec = {"podSelector": {"matchLabels": dict(sel.labels)}, "policyTypes": ["Egress"], "egress": rules}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(model, sel),
        "spec": spec,
    }


CILIUM_MAX_PORTS = 40  # the CRD's maxItems for toPorts[].ports


def _cilium_ports(items: Iterable[Port]) -> list[dict[str, Any]]:
    ports = [{"port": str(port), "protocol": proto} for proto, port in _sorted_ports(items)]
    return [{"ports": ports[i : i + CILIUM_MAX_PORTS]} for i in range(0, len(ports), CILIUM_MAX_PORTS)]


def ciliumnetworkpolicy(model: BehaviourModel, sel: Selection, eg: Egress, dns_depth: int) -> dict[str, Any]:
    """A ``cilium.io/v2`` CiliumNetworkPolicy: resolver with DNS rules, toFQDNs, cluster, then blocks."""
    names = name_rules(eg.names, dns_depth)
    rules: list[dict[str, Any]] = []
    if eg.resolver:
        resolver = {"k8s:io.kubernetes.pod.namespace": DNS_NAMESPACE, **{f"k8s:{k}": v for k, v in DNS_LABELS.items()}}
        dns_port: dict[str, Any] = {"ports": [{"port": "53", "protocol": "ANY"}]}
        if names:
            dns_port["rules"] = {"dns": [dict(n) for n in names]}  # only these resolve (and feed toFQDNs)
        rules.append({"toEndpoints": [{"matchLabels": resolver}], "toPorts": [dns_port]})
    if names and eg.public:
        rules.append({"toFQDNs": names, "toPorts": _cilium_ports(eg.public)})
    if eg.in_cluster:
        rules.append({"toEntities": ["cluster"], "toPorts": _cilium_ports(eg.in_cluster)})
    for block in sorted(eg.blocks, key=_block_key):
        rules.append({"toCIDR": [str(block)], "toPorts": _cilium_ports(eg.blocks[block])})
    spec = {
        "endpointSelector": {"matchLabels": dict(sel.labels)},
        "enableDefaultDeny": {"egress": True, "ingress": False},
        "egress": rules,
    }
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _metadata(model, sel),
        "spec": spec,
    }


# --- text ---------------------------------------------------------------------------------------------


def _header(model: BehaviourModel, sel: Selection, eg: Egress, kind: str) -> list[str]:
    image = f"{model.image_name}:{model.image_tag or '*'}"
    lines = [f"{kind} for {image}, generated by Vigil from the egress it learned (egress only: no ingress is learned)."]
    if sel.placeholder:
        lines.append(
            f"PLACEHOLDER selector {PLACEHOLDER_KEY}={sel.labels[PLACEHOLDER_KEY]}: the workload registry knows no "
            f"labels common to {image}'s containers; edit it before applying."
        )
    else:
        lines.append(f"Selector: the pod labels common to the {sel.containers} registered containers of {image}.")
    if eg.in_cluster:
        lines.append("Private blocks may hold pods and services: their ports are also allowed to in-cluster peers.")
    if eg.names:
        lines.append(f"DNS names learned: {', '.join(eg.names)}.")
    lines += [f"No rule: {note}." for note in sorted(eg.notes)]
    return [f"# {line}" for line in lines]


def _yaml(header: list[str], doc: dict[str, Any]) -> str:
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)


def render_networkpolicy(model: BehaviourModel, sel: Selection, dns_depth: int = 3) -> str:
    eg = classify(model)
    return _yaml(_header(model, sel, eg, "NetworkPolicy"), networkpolicy(model, sel, eg))


def render_ciliumnetworkpolicy(model: BehaviourModel, sel: Selection, dns_depth: int = 3) -> str:
    eg = classify(model)
    return _yaml(_header(model, sel, eg, "CiliumNetworkPolicy"), ciliumnetworkpolicy(model, sel, eg, dns_depth))
