"""Generic netlink helpers (pyroute2): links, addresses, routes, policy rules, neighbours, sysctls.

Synchronous and small; every call acts in the namespace the :class:`Netlink` handle was opened for
(``Netlink()`` = the caller's, ``Netlink("ns")`` = a named one, never created implicitly). Calls run in
a private thread of the handle, so they work from async code too (they block it briefly). Adds are
idempotent (an existing equal object is fine) and deletes tolerate absence, so reconcilers can call
them level-triggered. Long sequences from asyncio code belong in ``asyncio.to_thread``. Used by the load balancer
(fwmark rules and per-target routes), the proxy, the frontend, the TAPA and the test topologies.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import errno
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meridio.kernel import netns as netnsmod

__all__ = ["Netlink", "NetlinkError", "RuleInfo", "RouteInfo", "LinkDetails", "InterfaceStats", "family_of", "set_sysctl",
           "get_sysctl", "IFA_F_NODAD", "is_unreachable", "VXLAN_PORT", "VxlanInfo"]

VXLAN_PORT = 4789
"""IANA's VXLAN UDP port (RFC 7348), as NSM's cross-node interfaces use."""

IFA_F_NODAD = 0x02
"""Address flag: skip IPv6 duplicate address detection (the address is usable at once)."""

_RTN_UNICAST = 1
_RTN_BLACKHOLE = 6
_RTN_UNREACHABLE = 7
_RTNH_F_ONLINK = 4


def family_of(address: str) -> int:
    """``AF_INET`` or ``AF_INET6`` for an address or prefix text."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def is_unreachable(exc: BaseException) -> bool:
    """True when a route add failed because its gateway is not on any connected subnet (yet)."""
    return isinstance(exc, NetlinkError) and exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH)


@dataclasses.dataclass(frozen=True)
class RuleInfo:
    family: int
    priority: int
    table: int
    fwmark: int | None = None
    src: str | None = None
    """``address/len`` or None."""
    dst: str | None = None
    """``address/len`` or None (``ip rule ... to DST``)."""


@dataclasses.dataclass(frozen=True)
class RouteInfo:
    family: int
    table: int
    dst: str
    """``address/len``; ``0.0.0.0/0`` or ``::/0`` for a default route."""
    gateway: str | None
    oif: int | None
    type: int = _RTN_UNICAST


@dataclasses.dataclass(frozen=True)
class LinkDetails:
    """An interface as listed by :meth:`Netlink.links`."""

    name: str
    index: int
    kind: str | None
    alias: str | None
    """``IFLA_IFALIAS`` (``ip link set DEV alias TEXT``): free text, up to 255 bytes."""
    master: int | None
    peer_index: int | None
    """``IFLA_LINK``: for a veth, the index of its other end (in that end's namespace)."""


@dataclasses.dataclass(frozen=True)
class VxlanInfo:
    """A point-to-point VXLAN interface's tunnel parameters."""

    vni: int
    local: str
    remote: str
    port: int
    mac: str
    mtu: int


@dataclasses.dataclass(frozen=True)
class InterfaceStats:
    """An interface's kernel counters (``IFLA_STATS64``) and its MAC, as metrics report them."""

    name: str
    mac: str
    rx_packets: int
    rx_bytes: int
    rx_errors: int
    rx_dropped: int
    tx_packets: int
    tx_bytes: int
    tx_errors: int
    tx_dropped: int


def _default(family: int) -> str:
    return "0.0.0.0/0" if family == socket.AF_INET else "::/0"


class _ThreadBound:
    """Runs every call of a pyroute2 ``IPRoute`` in one private thread.

    pyroute2's synchronous API drives its own asyncio loop, so it cannot be called from a thread that
    runs an event loop (``This event loop is already running``); a private thread makes :class:`Netlink`
    usable from anywhere (async code, worker threads). Results are materialised in that thread.
    """

    def __init__(self, netns: str | None) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr = self._pool.submit(lambda: IPRoute(netns=netns, flags=0) if netns else IPRoute()).result()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._ipr, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            def inside() -> Any:
                result = method(*args, **kwargs)
                return result if isinstance(result, (list, tuple, dict, int, str, type(None))) else list(result)

            return self._pool.submit(inside).result()

        return call

    def close(self) -> None:
        try:
            self._pool.submit(self._ipr.close).result()
        finally:
            self._pool.shutdown(wait=True)


class Netlink:
    """A pyroute2 handle bound to one network namespace; callable from any thread or event loop."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = _ThreadBound(netns)

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- links -----------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        found = self._ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    def _index(self, name: str) -> int:
        index = self.link_index(name)
        if index is None:
            raise NetlinkError(errno.ENODEV, f"no interface {name!r} in netns {self.netns or '(own)'}")
        return index

    def link_names(self) -> list[str]:
        return [str(link.get_attr("IFLA_IFNAME")) for link in self._ipr.get_links()]

    def set_link(self, name: str, *, up: bool | None = None, mtu: int | None = None,
                 master: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if mtu is not None:
            kwargs["mtu"] = mtu
        if master is not None:
            kwargs["master"] = self._index(master)
        if up is not None:
            kwargs["state"] = "up" if up else "down"
        if kwargs:
            self._ipr.link("set", index=self._index(name), **kwargs)

    def add_veth(self, name: str, peer: str, *, peer_netns: str | None = None, peer_name: str | None = None,
                 mtu: int | None = None) -> None:
        """Create veth ``name``/``peer`` here; move ``peer`` into ``peer_netns`` (renamed ``peer_name``)."""
        if self.link_index(name) is None:
            self._ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        if mtu is not None:
            self.set_link(name, mtu=mtu)
        if peer_netns is not None and self.link_index(peer) is not None:
            extra = {"ifname": peer_name} if peer_name else {}
            self._ipr.link("set", index=self._index(peer), net_ns_fd=peer_netns, **extra)
            if mtu is not None:
                with Netlink(peer_netns) as far:
                    far.set_link(peer_name or peer, mtu=mtu)

    def add_bridge(self, name: str, *, mac: str | None = None, mcast_snooping: bool | None = None) -> None:
        """Create bridge ``name`` if missing; ``mac`` fixes its address (else it follows its ports)."""
        if self.link_index(name) is None:
            kwargs: dict[str, Any] = {}
            if mac is not None:
                kwargs["address"] = mac
            if mcast_snooping is not None:
                kwargs["br_mcast_snooping"] = int(mcast_snooping)
            self._ipr.link("add", ifname=name, kind="bridge", **kwargs)

    def add_veth_into(self, name: str, peer: str, *, peer_netns_fd: int) -> int:
        """Create veth ``name`` here whose other end ``peer`` is born inside the namespace open as
        ``peer_netns_fd`` (an fd of ``/run/netns/X`` or ``/proc/PID/ns/net``). Returns the peer's index
        there. ``NetlinkError`` EEXIST if either name is taken (nothing is created then)."""
        self._ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_netns_fd})
        return int(self._ipr.get_links(self._index(name))[0].get_attr("IFLA_LINK"))

    def add_vxlan(self, name: str, *, vni: int, local: str, remote: str, port: int = VXLAN_PORT,
                  mac: str | None = None, mtu: int | None = None) -> None:
        """Create a point-to-point VXLAN interface ``name`` (``vni``, UDP ``port``) from ``local`` to
        ``remote`` (same family), without learning: every frame goes to ``remote``. The tunnel's UDP
        packets are routed by this namespace's own tables. ``NetlinkError`` EEXIST when the name, or the
        VNI on this port, is taken here (nothing is created then)."""
        v6 = family_of(remote) == socket.AF_INET6
        kwargs: dict[str, Any] = {"vxlan_id": vni, "vxlan_port": port, "vxlan_learning": 0,
                                  ("vxlan_group6" if v6 else "vxlan_group"): remote,
                                  ("vxlan_local6" if v6 else "vxlan_local"): local}
        if mac is not None:
            kwargs["address"] = mac
        if mtu is not None:
            kwargs["mtu"] = mtu
        self._ipr.link("add", ifname=name, kind="vxlan", **kwargs)

    def vxlan_info(self, name: str) -> VxlanInfo | None:
        """The tunnel parameters of VXLAN interface ``name`` (``None``: no such interface, or not VXLAN)."""
        index = self.link_index(name)
        if index is None:
            return None
        link = self._ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
            return None
        data = info.get_attr("IFLA_INFO_DATA")
        remote = data.get_attr("IFLA_VXLAN_GROUP") or data.get_attr("IFLA_VXLAN_GROUP6") or ""
        local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6") or ""
        return VxlanInfo(int(data.get_attr("IFLA_VXLAN_ID")), str(local), str(remote),
                         int(data.get_attr("IFLA_VXLAN_PORT")), str(link.get_attr("IFLA_ADDRESS")),
                         int(link.get_attr("IFLA_MTU")))

    def set_alias(self, name: str, alias: str) -> None:
        self._ipr.link("set", index=self._index(name), ifalias=alias)

    def links(self) -> list[LinkDetails]:
        return [_link_details(link) for link in self._ipr.get_links()]

    def interface_stats(self) -> list[InterfaceStats]:
        """Counters of every interface in the namespace (one netlink dump; no per-packet cost)."""
        out = []
        for link in self._ipr.get_links():
            st = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
            if st is None:
                continue
            out.append(InterfaceStats(
                str(link.get_attr("IFLA_IFNAME")), str(link.get_attr("IFLA_ADDRESS") or ""),
                int(st["rx_packets"]), int(st["rx_bytes"]), int(st["rx_errors"]), int(st["rx_dropped"]),
                int(st["tx_packets"]), int(st["tx_bytes"]), int(st["tx_errors"]), int(st["tx_dropped"])))
        return out

    def link_details(self, index: int) -> LinkDetails | None:
        """The interface with ``index``, or ``None``."""
        try:
            return _link_details(self._ipr.get_links(index)[0])
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.EINVAL):
                return None
            raise

    def delete_link(self, name: str) -> None:
        index = self.link_index(name)
        if index is not None:
            try:
                self._ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise

    # --- addresses -------------------------------------------------------------------------

    def add_address(self, ifname: str, cidr: str, *, nodad: bool = True) -> None:
        """Add ``address/len`` to ``ifname`` (IPv6 without DAD unless ``nodad=False``); idempotent."""
        iface = ipaddress.ip_interface(cidr)
        kwargs: dict[str, Any] = {}
        if iface.version == 6 and nodad:
            kwargs["flags"] = IFA_F_NODAD
        try:
            self._ipr.addr("add", index=self._index(ifname), address=str(iface.ip),
                           prefixlen=iface.network.prefixlen, **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def delete_address(self, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        index = self.link_index(ifname)
        if index is None:
            return
        try:
            self._ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                raise

    def addresses(self, ifname: str | None = None) -> list[str]:
        """``address/len`` of one interface (or all), both families."""
        kwargs: dict[str, Any] = {}
        if ifname is not None:
            index = self.link_index(ifname)
            if index is None:
                return []
            kwargs["index"] = index
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in self._ipr.get_addr(**kwargs)]

    # --- routes ----------------------------------------------------------------------------

    def replace_route(self, dst: str, *, gateway: str | None = None, table: int = 254, dev: str | None = None,
                      onlink: bool = False, kind: str = "unicast", multipath: list[str] | None = None,
                      metric: int | None = None) -> None:
        """Add or replace a route; ``dst`` ``default`` means the default route of ``gateway``'s family.

        Raises ``NetlinkError`` (ENETUNREACH, see :func:`is_unreachable`) when ``gateway`` is on no
        connected subnet. ``multipath``: gateways of an ECMP route (all of one family).
        """
        ref = gateway or (multipath[0] if multipath else None) or dst
        family = family_of(ref if dst == "default" else dst)
        kwargs: dict[str, Any] = {"dst": _default(family) if dst == "default" else str(ipaddress.ip_network(dst)),
                                  "table": table, "family": family,
                                  "type": {"unicast": _RTN_UNICAST, "blackhole": _RTN_BLACKHOLE,
                                           "unreachable": _RTN_UNREACHABLE}[kind]}
        if gateway:
            kwargs["gateway"] = gateway
        if dev:
            kwargs["oif"] = self._index(dev)
        if onlink:
            kwargs["flags"] = _RTNH_F_ONLINK
        if metric is not None:
            kwargs["priority"] = metric
        if multipath:
            kwargs["multipath"] = [{"gateway": gw} for gw in multipath]
        self._ipr.route("replace", **kwargs)

    def default_nexthops(self, *, table: int, family: int) -> tuple[str, ...] | None:
        """Gateways of the default route of ``table`` (several for a multipath route), sorted as text;
        ``None`` when the table has no default route of ``family``."""
        for r in self._ipr.get_routes(family=family, table=table):
            if r["dst_len"] != 0 or (r.get_attr("RTA_TABLE") or r["table"]) != table:
                continue
            if r.get_attr("RTA_GATEWAY"):
                return (str(r.get_attr("RTA_GATEWAY")),)
            return tuple(sorted(str(nh.get_attr("RTA_GATEWAY")) for nh in r.get_attr("RTA_MULTIPATH") or []
                                if nh.get_attr("RTA_GATEWAY")))
        return None

    def delete_route(self, dst: str, *, table: int = 254, family: int | None = None) -> None:
        fam = family or family_of(dst)
        target = _default(fam) if dst == "default" else str(ipaddress.ip_network(dst))
        try:
            self._ipr.route("del", dst=target, table=table, family=fam)
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise

    def routes(self, *, table: int | None = None, family: int | None = None) -> list[RouteInfo]:
        out = []
        for fam in ([family] if family else [socket.AF_INET, socket.AF_INET6]):
            kwargs: dict[str, Any] = {"family": fam}
            if table is not None:
                kwargs["table"] = table
            for r in self._ipr.get_routes(**kwargs):
                out.append(_route_info(r))
        return out

    # --- rules -----------------------------------------------------------------------------

    def add_rule(self, *, priority: int, table: int, family: int, fwmark: int | None = None,
                 src: str | None = None, dst: str | None = None) -> None:
        """``ip rule add [fwmark X] [from SRC] [to DST] lookup TABLE priority P``; idempotent."""
        wanted = RuleInfo(family, priority, table, fwmark, _prefix(src) if src else None, _prefix(dst) if dst else None)
        if wanted in self.rules(family=family):
            return
        kwargs: dict[str, Any] = {"priority": priority, "table": table, "family": family}
        if fwmark is not None:
            kwargs["fwmark"] = fwmark
        if src is not None:
            net = ipaddress.ip_network(src, strict=False)
            kwargs["src"], kwargs["src_len"] = str(net.network_address), net.prefixlen
        if dst is not None:
            net = ipaddress.ip_network(dst, strict=False)
            kwargs["dst"], kwargs["dst_len"] = str(net.network_address), net.prefixlen
        self._ipr.rule("add", **kwargs)

    def delete_rule(self, rule: RuleInfo) -> None:
        kwargs: dict[str, Any] = {"priority": rule.priority, "table": rule.table, "family": rule.family}
        if rule.fwmark is not None:
            kwargs["fwmark"] = rule.fwmark
        if rule.src is not None:
            net = ipaddress.ip_network(rule.src)
            kwargs["src"], kwargs["src_len"] = str(net.network_address), net.prefixlen
        if rule.dst is not None:
            net = ipaddress.ip_network(rule.dst)
            kwargs["dst"], kwargs["dst_len"] = str(net.network_address), net.prefixlen
        try:
            self._ipr.rule("del", **kwargs)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ESRCH):
                raise

    def rules(self, *, family: int | None = None) -> list[RuleInfo]:
        out = []
        for fam in ([family] if family else [socket.AF_INET, socket.AF_INET6]):
            for r in self._ipr.get_rules(family=fam):
                src, dst = r.get_attr("FRA_SRC"), r.get_attr("FRA_DST")
                table = r.get_attr("FRA_TABLE") or r["table"]
                out.append(RuleInfo(int(fam), int(r.get_attr("FRA_PRIORITY") or 0), int(table),
                                    r.get_attr("FRA_FWMARK"), f"{src}/{r['src_len']}" if src else None,
                                    f"{dst}/{r['dst_len']}" if dst else None))
        return out

    # --- neighbours ------------------------------------------------------------------------

    def delete_neighbours(self, ip: str) -> int:
        """Remove every neighbour entry of ``ip`` (any interface); returns how many went."""
        removed = 0
        for n in self._ipr.get_neighbours(family=family_of(ip)):
            if n.get_attr("NDA_DST") == ip:
                try:
                    self._ipr.neigh("del", dst=ip, ifindex=n["ifindex"], family=family_of(ip))
                    removed += 1
                except NetlinkError as exc:
                    if exc.code not in (errno.ENOENT, errno.ESRCH):
                        raise
        return removed


def _link_details(link: Any) -> LinkDetails:
    info = link.get_attr("IFLA_LINKINFO")
    return LinkDetails(str(link.get_attr("IFLA_IFNAME")), int(link["index"]),
                       info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                       link.get_attr("IFLA_IFALIAS"), link.get_attr("IFLA_MASTER"), link.get_attr("IFLA_LINK"))


def _prefix(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def _route_info(r: Any) -> RouteInfo:
    fam = r["family"]
    dst = r.get_attr("RTA_DST")
    table = r.get_attr("RTA_TABLE") or r["table"]
    gateway = r.get_attr("RTA_GATEWAY")
    return RouteInfo(int(fam), int(table), f"{dst}/{r['dst_len']}" if dst else _default(fam), gateway,
                     r.get_attr("RTA_OIF"), int(r["type"]))


# --- sysctls -----------------------------------------------------------------------------------

def _sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def _in_netns(netns: str | None, fn: Any) -> Any:
    if netns is None:
        return fn()
    box: dict[str, Any] = {}

    def inside() -> None:
        try:
            with netnsmod.entered(netns):
                box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    helper = threading.Thread(target=inside, name=f"sysctl-{netns}")
    helper.start()
    helper.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def set_sysctl(name: str, value: str | int, *, netns: str | None = None) -> None:
    """Write ``net.ipv4.ip_forward``-style sysctl ``name`` (per-namespace ones in ``netns``)."""

    def write() -> None:
        with open(_sysctl_path(name), "w") as f:
            f.write(str(value))

    _in_netns(netns, write)


def get_sysctl(name: str, *, netns: str | None = None) -> str:
    def read() -> str:
        with open(_sysctl_path(name)) as f:
            return f.read().strip()

    return str(_in_netns(netns, read))


# --- change notifications ----------------------------------------------------------------------

_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR, _RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
_RTMGRP_IPV6_IFADDR, _RTMGRP_IPV6_ROUTE = 0x100, 0x400
CHANGE_GROUPS = (_RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_IFADDR
                 | _RTMGRP_IPV6_ROUTE)
"""Links, addresses and routes of both families."""


async def watch_changes(*, groups: int = CHANGE_GROUPS) -> AsyncIterator[None]:
    """Yield once per burst of rtnetlink notifications in the caller's namespace (content not parsed).

    For reconcilers that re-read the state anyway: a link, address or route came or went. A receive
    buffer overflow (ENOBUFS) also counts as a change.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
    sock.bind((0, groups))
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(sock.fileno(), ready.set)
    try:
        while True:
            await ready.wait()
            ready.clear()
            while True:
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
            yield None
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
