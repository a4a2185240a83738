"""What the proxy wants the kernel to look like, computed from its inputs (pure: no I/O, no clock).

Inputs come from NSP (LB replicas, trench VIPs, the conduit's flows), IPAM (addresses) and the link
service (targets). Outputs are frozen values the adapters compare with what they observe and apply as
a difference (level-triggered reconcile):

- :func:`lb_peers`: the LB replicas to link to (``LOADBALANCER`` targets of this conduit);
- :func:`egress`: ``ip rule from <VIP> lookup 1`` per trench VIP and, per family, the multipath default
  route's next hops in table 1 (the LB ends of the LB links) — reference §3.8;
- :func:`target_iface`: a target interface's addresses (conduit address + VIPs as host addresses), its
  ``from <VIP>`` rules and its default route via the bridge addresses — reference §3.10, §1.2.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from meridio.api import model
from meridio.proxy import names

__all__ = [
    "EGRESS_TABLE",
    "FAMILIES",
    "TARGET_TABLE_BASE",
    "Delta",
    "Egress",
    "IfaceState",
    "LbPeer",
    "PeerProblem",
    "address_key",
    "conduit_vips",
    "delta",
    "egress",
    "families",
    "family_of",
    "lb_peers",
    "normalize_interface",
    "normalize_prefix",
    "target_iface",
    "target_table",
    "target_vips",
    "vip_host_address",
]

FAMILIES = {"ipv4": (4,), "ipv6": (6,), "dualstack": (4, 6)}
EGRESS_TABLE = 1
"""Proxy table holding the multipath default route via every LB replica (Meridio's choice)."""
TARGET_TABLE_BASE = 10000
"""Target-side policy table = base + the target interface's ifindex: unique in the target namespace
without coordination, so several conduits (several proxies) can link the same target."""

T = TypeVar("T")


def families(ip_family: str) -> tuple[int, ...]:
    """``NSM_IP_FAMILY`` (``ipv4``, ``ipv6``, ``dualstack``) as IP versions."""
    try:
        return FAMILIES[ip_family.strip().lower()]
    except KeyError:
        raise ValueError(f"ip_family: must be one of ipv4, ipv6, dualstack (got {ip_family!r})") from None


def family_of(address: str) -> int:
    return ipaddress.ip_interface(address).version


def normalize_interface(address: str) -> str:
    """``172.16.1.6/24`` in canonical text (IPv6 compressed)."""
    return str(ipaddress.ip_interface(address))


def address_key(address: str) -> tuple[int, int]:
    """Sort key of ``ip/len`` texts: IPv4 before IPv6, then numerically."""
    iface = ipaddress.ip_interface(address)
    return (iface.version, int(iface.ip))


def normalize_prefix(prefix: str) -> str:
    """A VIP prefix in canonical text; host bits are dropped (``20.0.0.1`` → ``20.0.0.1/32``)."""
    return str(ipaddress.ip_network(prefix, strict=False))


# --- LB replicas ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, order=True)
class LbPeer:
    """One LB replica of the conduit, as it announced itself (``Target.context``)."""

    identifier: str
    netns: str
    ifprefix: str
    node: str = ""
    """The replica's node ('' = not announced: linked with a veth into ``netns``, as on one node)."""
    addresses: tuple[str, ...] = ()
    """Its pod addresses (tunnel ends of a cross-node link)."""
    link_port: int = 0
    """The TCP port of its ConduitLink service."""
    netns_id: str = ""
    """Identity of its namespace: a new one (made again) means the old link ends are gone."""

    def remote_on(self, node: str) -> bool:
        """Whether a proxy on ``node`` links to this replica with a tunnel (it is on another node)."""
        return bool(self.node and self.addresses and self.link_port and self.node != node)


@dataclasses.dataclass(frozen=True)
class PeerProblem:
    identifier: str
    error: str


def _in_conduit(target: model.Target, *, trench: str, conduit: str) -> bool:
    c = target.stream.conduit if target.stream is not None else None
    return (c is not None and c.name == conduit and c.trench is not None and c.trench.name == trench)


def lb_peers(targets: Iterable[model.Target], *, trench: str, conduit: str
             ) -> tuple[dict[str, LbPeer], tuple[PeerProblem, ...]]:
    """The enabled ``LOADBALANCER`` targets of this conduit, by identifier, and the unusable ones."""
    peers: dict[str, LbPeer] = {}
    problems: list[PeerProblem] = []
    for t in targets:
        if t.type != model.TargetType.LOADBALANCER or t.status != model.TargetStatus.ENABLED:
            continue
        if not _in_conduit(t, trench=trench, conduit=conduit):
            continue
        ctx = t.context_dict
        ident = ctx.get("identifier", "")
        try:
            peer = LbPeer(names.check_identifier(ident, "context.identifier"),
                          names.check_netns(ctx.get("netns", ""), "context.netns"),
                          names.check_ifprefix(ctx.get("ifprefix", ""), "context.ifprefix"),
                          **_cross_node(ctx))
        except names.InvalidName as exc:
            problems.append(PeerProblem(ident, str(exc)))
            continue
        peers[peer.identifier] = peer
    return peers, tuple(problems)


def _cross_node(ctx: Mapping[str, str]) -> dict[str, Any]:
    """The optional cross-node keys of a LOADBALANCER context (all three or none)."""
    node, address, port = ctx.get("node", ""), ctx.get("address", ""), ctx.get("link-port", "")
    if not (node or address or port):
        return {}
    if not _NODE.match(node):
        raise names.InvalidName(f"context.node: must be a node name (got {node[:64]!r})")
    try:
        addresses = tuple(str(ipaddress.ip_address(a)) for a in address.split(","))
    except ValueError:
        raise names.InvalidName(f"context.address: must be comma-separated IP addresses (got {address[:64]!r})") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise names.InvalidName(f"context.link-port: must be a TCP port (got {port[:16]!r})")
    netns_id = ctx.get("netns-id", "")
    if netns_id and not netns_id.isdigit():
        raise names.InvalidName(f"context.netns-id: must be digits (got {netns_id[:32]!r})")
    return {"node": node, "addresses": addresses, "link_port": int(port), "netns_id": netns_id}


_NODE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


# --- egress --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Egress:
    rules: frozenset[str]
    """VIP prefixes with ``from <VIP> lookup 1``."""
    nexthops: Mapping[int, tuple[str, ...]]
    """Per IP version: sorted next-hop addresses of the table-1 default route (empty: no route)."""


def egress(vips: Iterable[model.Vip], lb_addresses: Iterable[str], fams: Iterable[int]) -> Egress:
    """Rules for every trench VIP of a served family; next hops = the LB ends' addresses."""
    served = set(fams)
    rules = frozenset(p for p in (_vip_prefix(v.address) for v in vips)
                      if p is not None and ipaddress.ip_network(p).version in served)
    hops: dict[int, list[str]] = {f: [] for f in sorted(served)}
    for a in lb_addresses:
        ip = ipaddress.ip_interface(a).ip
        if ip.version in hops:
            hops[ip.version].append(str(ip))
    return Egress(rules, {f: tuple(sorted(set(h), key=ipaddress.ip_address)) for f, h in hops.items()})


def _vip_prefix(address: str) -> str | None:
    try:
        return normalize_prefix(address)
    except ValueError:
        return None


# --- target interface ----------------------------------------------------------------------------

def conduit_vips(flows: Iterable[model.Flow]) -> frozenset[str]:
    """The union of the VIPs of all flows of the conduit (the TAPA's rule in Meridio, §1.2)."""
    return frozenset(p for f in flows for v in f.vips if (p := _vip_prefix(v.address)) is not None)


def target_vips(vips: Iterable[str], bridge_addresses: Iterable[str], fams: Iterable[int]) -> tuple[str, ...]:
    """VIP prefixes to put on a target: served families only, none overlapping a bridge subnet."""
    served = set(fams)
    bridges = [ipaddress.ip_interface(b).network for b in bridge_addresses]
    out = []
    for v in vips:
        net = ipaddress.ip_network(v)
        if net.version in served and not any(net.version == b.version and net.overlaps(b) for b in bridges):
            out.append(str(net))
    return tuple(sorted(out, key=lambda p: (ipaddress.ip_network(p).version, ipaddress.ip_network(p))))


def vip_host_address(prefix: str) -> str:
    """The address a VIP prefix puts on the target interface: its first address as /32 or /128.

    A wider VIP (``203.0.113.0/24``) is still matched as a whole by the ``from`` rule; only its network
    address becomes local, so the target does not get a connected route for the whole VIP range.
    """
    net = ipaddress.ip_network(prefix)
    return f"{net.network_address}/{net.max_prefixlen}"


@dataclasses.dataclass(frozen=True)
class IfaceState:
    """What the proxy owns on one target interface and its policy table."""

    addresses: frozenset[str] = frozenset()
    """Normalized ``ip/len``: the conduit addresses and the VIP host addresses (link-local excluded)."""
    rules: frozenset[str] = frozenset()
    """Source prefixes with ``from <prefix> lookup <table>``."""
    gateways: frozenset[str] = frozenset()
    """Next hops of the table's default routes (one per family: the bridge addresses)."""


def target_iface(addresses: Iterable[str], vips: Iterable[str], gateways: Iterable[str]) -> IfaceState:
    """Desired state of a target interface: rules and VIPs only for families with a gateway."""
    gw = frozenset(str(ipaddress.ip_interface(g).ip) for g in gateways)
    gw_families = {ipaddress.ip_address(g).version for g in gw}
    usable = [v for v in vips if ipaddress.ip_network(v).version in gw_families]
    addrs = {normalize_interface(a) for a in addresses} | {vip_host_address(v) for v in usable}
    return IfaceState(frozenset(addrs), frozenset(normalize_prefix(v) for v in usable), gw)


def target_table(ifindex: int) -> int:
    return TARGET_TABLE_BASE + ifindex


@dataclasses.dataclass(frozen=True)
class Delta(Generic[T]):
    add: frozenset[T]
    remove: frozenset[T]

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def delta(current: Iterable[T], desired: Iterable[T]) -> Delta[T]:
    cur, want = frozenset(current), frozenset(desired)
    return Delta(want - cur, cur - want)
