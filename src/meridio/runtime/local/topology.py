"""The external side of a local environment, and the links that attach pods to it.

What a real user would own: per external network a segment (a Linux bridge ``br0`` in its own
namespace), per router a namespace with ``ext0`` on the segment and ``tg0`` towards its traffic
generator namespace (``eth0``, default routes via the router). Frontend pods get their external
interface (the attractor's interface name, e.g. ``ext-vlan0``) as a veth whose other end is a port of
the segment's bridge.

The cluster network (:mod:`meridio.runtime.local.cluster`): the underlay segment (bridge ``br0`` in
``<prefix>-underlay``), per node a namespace with ``ul0`` on it, a bridge ``cni0`` for its pods and routes
to the other nodes' pod subnets; each pod's ``eth0`` is a veth onto its node's ``cni0``
(:func:`pod_link`), with default routes via the node (:func:`ensure_pod_network`).

Everything is idempotent and repairs what is half-built: a link whose ends or addresses are not as
wanted is deleted and made again; what is already right is left alone (so ``meridio up`` on a running
environment changes nothing). Kernel changes go through ``ip -batch`` (one process per namespace and
step) and ``sysctl`` inside ``ip netns exec``, through :mod:`meridio.kernel.iproute`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import time
from collections.abc import Iterable, Mapping, Sequence

from meridio.kernel import iproute
from meridio.kernel import netns as netnsmod
from meridio.runtime import workloads
from meridio.runtime.local import cluster as clustermod
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming, port_name

__all__ = [
    "BRIDGE",
    "POD_SYSCTLS",
    "ROUTER_EXT",
    "ROUTER_SYSCTLS",
    "ROUTER_TG",
    "TG_IF",
    "LinkSpec",
    "TopologyError",
    "NODE_SYSCTLS",
    "ensure_bridge",
    "ensure_cluster",
    "ensure_external",
    "ensure_pod_network",
    "pod_link",
    "ensure_link",
    "ensure_namespace",
    "external_link",
    "fe_address",
    "remove_namespaces",
    "stable_mac",
]

BRIDGE = "br0"
ROUTER_EXT = "ext0"
ROUTER_TG = "tg0"
TG_IF = "eth0"

ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.fib_multipath_hash_policy": "1", "net.ipv6.fib_multipath_hash_policy": "1",
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
}
"""Gateways spread flows over the FE replicas by 5-tuple (L4 multipath hash), as a real router would."""

POD_SYSCTLS = dict(workloads.SYSCTLS)
"""Meridio's ``sysctl-init`` init container of the FE/LB and proxy pods (the one model's)."""


NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
}
"""A node routes between its pods and the other nodes (a CNI's host-gw mode)."""


class TopologyError(RuntimeError):
    """A kernel operation failed; the message carries the command's own error."""


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    """A veth: ``ifname`` in ``ns`` (addressed) ↔ ``peer_ifname`` in ``peer_ns`` (optionally a bridge port)."""

    ns: str
    ifname: str
    peer_ns: str
    peer_ifname: str
    addresses: tuple[str, ...] = ()
    peer_master: str | None = None
    peer_addresses: tuple[str, ...] = ()
    mtu: int | None = None
    """MTU of both ends (``None``: the kernel's default, 1500)."""


# --------------------------------------------------------------------------- kernel steps (through kernel.iproute)


def _run(argv: Sequence[str]) -> str:
    try:
        return iproute.run(argv)
    except iproute.IpCommandError as exc:
        raise TopologyError(str(exc)) from None


def _batch(ns: str, lines: Iterable[str]) -> None:
    try:
        iproute.batch(ns, lines)
    except iproute.IpCommandError as exc:
        raise TopologyError(str(exc)) from None


def _sysctl(ns: str, values: Mapping[str, str]) -> None:
    try:
        iproute.sysctl(ns, values)
    except iproute.IpCommandError as exc:
        raise TopologyError(str(exc)) from None


def stable_mac(ns: str, ifname: str) -> str:
    """A locally administered unicast MAC derived from the interface's identity.

    A namespace made again (``up`` repairing a router or a pod) gets the MAC it had, so its peers'
    neighbour caches stay right instead of pointing at a MAC that is gone for up to a minute.
    """
    digest = hashlib.sha256(f"{ns}/{ifname}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _addr_line(ifname: str, cidr: str) -> str:
    nodad = " nodad" if ":" in cidr else ""
    return f"addr replace {cidr} dev {ifname}{nodad}"


# --------------------------------------------------------------------------- idempotent building blocks


def ensure_namespace(ns: str, sysctls: Mapping[str, str] | None = None) -> None:
    netnsmod.create(ns)
    _sysctl(ns, sysctls or {})


def ensure_bridge(ns: str, name: str = BRIDGE) -> None:
    if not iproute.link_exists(ns, name):
        _batch(ns, [f"link add {name} type bridge mcast_snooping 0", f"link set {name} up"])


def ensure_link(spec: LinkSpec) -> bool:
    """Make the veth as specified; returns True if it had to be (re)made."""
    have = iproute.addresses(spec.ns, spec.ifname)
    peer = iproute.addresses(spec.peer_ns, spec.peer_ifname)
    if have is not None and peer is not None and set(spec.addresses) <= have and set(spec.peer_addresses) <= peer:
        return False
    iproute.delete_link(spec.ns, spec.ifname)
    iproute.delete_link(spec.peer_ns, spec.peer_ifname)
    _create_veth(spec)
    mtu = f" mtu {spec.mtu}" if spec.mtu else ""
    peer_lines = [f"link set {spec.peer_ifname} address {stable_mac(spec.peer_ns, spec.peer_ifname)}{mtu}"]
    if spec.peer_master:
        peer_lines.append(f"link set {spec.peer_ifname} master {spec.peer_master}")
    peer_lines += [_addr_line(spec.peer_ifname, a) for a in spec.peer_addresses]
    peer_lines.append(f"link set {spec.peer_ifname} up")
    _batch(spec.peer_ns, peer_lines)
    _sysctl(spec.ns, {f"net.ipv6.conf.{spec.ifname}.keep_addr_on_down": "1",
                      f"net.ipv6.conf.{spec.ifname}.accept_dad": "0"})
    _batch(spec.ns, [f"link set {spec.ifname} address {stable_mac(spec.ns, spec.ifname)}{mtu}",
                     *(_addr_line(spec.ifname, a) for a in spec.addresses), f"link set {spec.ifname} up"])
    return True


def _create_veth(spec: LinkSpec, attempts: int = 40) -> None:
    """``link add``, retried while the kernel still tears down a previous pair of the same name (a deleted
    namespace's veths go asynchronously)."""
    line = f"link add {spec.peer_ifname} type veth peer name {spec.ifname} netns {spec.ns}"
    for attempt in range(attempts):
        try:
            _batch(spec.peer_ns, [line])
            return
        except TopologyError as exc:
            if "exists" not in str(exc) or attempt == attempts - 1:
                raise
            iproute.delete_link(spec.peer_ns, spec.peer_ifname)
            time.sleep(0.05)


def _routes(ns: str, gateways: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface | None]) -> None:
    lines = []
    for gw in gateways:
        if gw is not None:
            fam = "-6 " if gw.version == 6 else ""
            lines.append(f"{fam}route replace default via {gw.ip}")
    for line in lines:  # "-6" is a global option: one batch per family
        _run(["ip", "-n", ns, *line.split()])


# --------------------------------------------------------------------------- the external side


def _cidr(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
          net: ipaddress.IPv4Network | ipaddress.IPv6Network | None) -> list[str]:
    return [f"{addr}/{net.prefixlen}"] if addr is not None and net is not None else []


def ensure_external(env: envmod.Environment, naming: Naming) -> None:
    """Segments, routers and traffic generators of ``env`` (idempotent)."""
    for net in env.networks:
        ensure_namespace(naming.network_ns(net.name))
        ensure_bridge(naming.network_ns(net.name))
    for router in env.routers:
        _ensure_router(env, naming, router)


def _ensure_router(env: envmod.Environment, naming: Naming, router: envmod.Router) -> None:
    net = env.network(router.network)
    assert net is not None  # checked when the environment was parsed
    rns = naming.router_ns(router.name)
    ensure_namespace(rns, ROUTER_SYSCTLS)
    ensure_link(LinkSpec(ns=rns, ifname=ROUTER_EXT, peer_ns=naming.network_ns(net.name),
                         peer_ifname=port_name(rns, "r"), peer_master=BRIDGE,
                         addresses=tuple(_cidr(router.ipv4, net.ipv4) + _cidr(router.ipv6, net.ipv6))))
    tg = router.traffic_generator
    if tg is None:
        return
    tns = naming.tg_ns(router.name)
    ensure_namespace(tns, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"})
    ensure_link(LinkSpec(ns=tns, ifname=TG_IF, peer_ns=rns, peer_ifname=ROUTER_TG,
                         addresses=tuple(str(a) for a in (tg.generator_address(4), tg.generator_address(6)) if a),
                         peer_addresses=tuple(str(a) for a in (tg.router_address(4), tg.router_address(6)) if a)))
    _routes(tns, (tg.router_address(4), tg.router_address(6)))


def fe_address(net: envmod.Network, index: int) -> tuple[str, ...]:
    """The external addresses of the ``index``-th (1-based) host on ``net``, per family present."""
    out = []
    for subnet in (net.ipv4, net.ipv6):
        if subnet is not None:
            out.append(f"{subnet.network_address + index}/{subnet.prefixlen}")
    return tuple(out)


def external_link(naming: Naming, net: envmod.Network, pod_ns: str, ifname: str,
                  addresses: Sequence[str]) -> LinkSpec:
    """The veth of a frontend pod onto its segment."""
    return LinkSpec(ns=pod_ns, ifname=ifname, peer_ns=naming.network_ns(net.name),
                    peer_ifname=port_name(pod_ns), peer_master=BRIDGE, addresses=tuple(addresses))


# --------------------------------------------------------------------------- the cluster network


def ensure_cluster(env: envmod.Environment, naming: Naming) -> None:
    """The underlay segment and every node of ``env`` (idempotent)."""
    plan = clustermod.plan(env)
    ensure_namespace(naming.underlay_ns)
    ensure_bridge(naming.underlay_ns)
    for node in plan.nodes:
        _ensure_node(plan, node, naming, env.cluster.mtu)


def _ensure_node(plan: clustermod.Plan, node: clustermod.Node, naming: Naming, mtu: int) -> None:
    ns = naming.node_ns(node.name)
    ensure_namespace(ns, NODE_SYSCTLS)
    ensure_link(LinkSpec(ns=ns, ifname=clustermod.UNDERLAY_IF, peer_ns=naming.underlay_ns,
                         peer_ifname=port_name(ns, "n"), peer_master=BRIDGE,
                         addresses=tuple(str(a) for a in node.underlay), mtu=mtu))
    ensure_bridge(ns, clustermod.POD_BRIDGE)
    _sysctl(ns, {f"net.ipv6.conf.{clustermod.POD_BRIDGE}.keep_addr_on_down": "1"})
    _batch(ns, [_addr_line(clustermod.POD_BRIDGE, str(a)) for a in node.gateways])
    for subnet, via in plan.routes(node.name):
        fam = ["-6"] if subnet.version == 6 else []
        _run(["ip", "-n", ns, *fam, "route", "replace", str(subnet), "via", str(via),
              "dev", clustermod.UNDERLAY_IF])


def pod_link(naming: Naming, node: str, pod_ns: str,
             addresses: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface], *, mtu: int | None = None) -> LinkSpec:
    """A pod's ``eth0``: a veth onto its node's ``cni0``."""
    return LinkSpec(ns=pod_ns, ifname=clustermod.POD_IF, peer_ns=naming.node_ns(node),
                    peer_ifname=port_name(pod_ns, "c"), peer_master=clustermod.POD_BRIDGE,
                    addresses=tuple(str(a) for a in addresses), mtu=mtu)


def ensure_pod_network(link: LinkSpec, gateways: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface]) -> None:
    """The pod's ``eth0`` (made again if not as wanted) and its default routes via the node, in the main
    table only: the components' own routing (fwmark and source rules, tables of their own) is untouched."""
    ensure_link(link)
    _routes(link.ns, gateways)


def remove_namespaces(naming: Naming) -> list[str]:
    """Delete every namespace of the environment (their veths go with them). Returns the names."""
    gone = [ns for ns in netnsmod.list_names() if naming.owns(ns)]
    for ns in gone:
        netnsmod.remove(ns)
    return gone
