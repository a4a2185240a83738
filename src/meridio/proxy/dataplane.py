"""The proxy's kernel adapter: bridge0, veth links into other namespaces, addresses, egress, target routes.

Every method is ``async`` and runs its netlink work on one dedicated thread, one call at a time. That
thread switches into another network namespace (an LB's, a target's) with ``setns`` only for the
duration of one call and always comes back to the proxy's own namespace, the one the process started
in; pyroute2 sockets are created inside the call, in the namespace being worked on, and closed before
leaving it. Nothing here decides *what* to configure: :mod:`meridio.proxy.plan` does; this module
compares with what it finds and applies the difference, so every call is idempotent.

Namespace references (:data:`NsRef`): ``None`` = the proxy's own, a ``str`` = a path
(``/run/netns/<name>``), an ``int`` = an open namespace file descriptor (a pinned target namespace).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import ipaddress
import os
import random
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from meridio.kernel import netlink, netns
from meridio.proxy import plan

__all__ = [
    "EGRESS_RULE_PRIORITY",
    "TARGET_RULE_PRIORITY",
    "Dataplane",
    "FarEnd",
    "KernelError",
    "NameTaken",
    "NamespaceGone",
    "NsRef",
    "Port",
    "netns_path",
]

NsRef = str | int | None
T = TypeVar("T")

EGRESS_RULE_PRIORITY = 100
TARGET_RULE_PRIORITY = 100
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


class KernelError(Exception):
    """A kernel operation failed; the message says which and why."""


class NameTaken(KernelError):
    """The interface name is already used in that namespace by something that is not ours."""


class NamespaceGone(KernelError):
    """The namespace to work in does not exist (any more)."""


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


Port = netlink.LinkDetails
"""An interface of the proxy namespace, as observed (``peer_index``: the other end of a veth)."""


@dataclasses.dataclass(frozen=True)
class FarEnd:
    """The other end of a veth link, as observed in its namespace."""

    name: str
    index: int
    alias: str | None
    peer_index: int | None
    addresses: frozenset[str]


def _err(what: str, exc: BaseException) -> KernelError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    text = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return KernelError(f"{what}: {text}")


def _sysctl(name: str, value: str | int, *, missing_ok: bool = False) -> None:
    """Set sysctl ``name`` in the calling thread's current network namespace."""
    try:
        netlink.set_sysctl(name, value)
    except FileNotFoundError:
        if not missing_ok:
            raise KernelError(f"sysctl {name}: not available in this namespace") from None


def _random_mac() -> str:
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{o:02x}" for o in octets)


def _addresses(nl: netlink.Netlink, ifname: str) -> frozenset[str]:
    """The addresses of an interface, link-local excluded, normalized."""
    found = set()
    for a in nl.addresses(ifname):
        iface = ipaddress.ip_interface(a)
        if not (iface.version == 6 and iface.ip.is_link_local):
            found.add(plan.normalize_interface(a))
    return frozenset(found)


def _sync_addresses(nl: netlink.Netlink, ifname: str, desired: Iterable[str]) -> None:
    d = plan.delta(_addresses(nl, ifname), (plan.normalize_interface(a) for a in desired))
    for a in sorted(d.remove):
        nl.delete_address(ifname, a)
    for a in sorted(d.add):
        nl.add_address(ifname, a, nodad=True)


def _rules(nl: netlink.Netlink, table: int) -> dict[str, netlink.RuleInfo]:
    """Source prefix → rule, for the ``from`` rules looking up ``table``."""
    return {plan.normalize_prefix(r.src): r for r in nl.rules() if r.table == table and r.src and r.fwmark is None}


def _sync_rules(nl: netlink.Netlink, table: int, desired: Iterable[str], priority: int) -> None:
    current = _rules(nl, table)
    d = plan.delta(current, desired)
    for prefix in sorted(d.remove):
        nl.delete_rule(current[prefix])
    for prefix in sorted(d.add):
        nl.add_rule(priority=priority, table=table, family=_AF[ipaddress.ip_network(prefix).version], src=prefix)


def _set_default(nl: netlink.Netlink, fam: int, table: int, hops: tuple[str, ...], dev: str, *,
                 onlink: bool) -> None:
    current = nl.default_nexthops(table=table, family=_AF[fam])
    wanted = tuple(sorted(str(ipaddress.ip_address(h)) for h in hops))
    if current is not None and tuple(sorted(str(ipaddress.ip_address(h)) for h in current)) == wanted:
        return
    if not wanted:
        nl.delete_route("default", table=table, family=_AF[fam])
    elif len(wanted) == 1:
        nl.replace_route("default", gateway=wanted[0], table=table, dev=dev, onlink=onlink)
    else:
        nl.replace_route("default", multipath=list(wanted), table=table)


class Dataplane:
    """Kernel state of one proxy. Create and use it inside the proxy's own namespace."""

    def __init__(self, *, bridge: str = "bridge0", mtu: int = 1500, families: Iterable[int] = (4, 6)) -> None:
        self.bridge = bridge
        self.mtu = mtu
        self.families = tuple(families)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="proxy-kernel")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._guarded, fn, *args)

    @staticmethod
    def _guarded(fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except KernelError:
            raise
        except (netlink.NetlinkError, OSError) as exc:
            raise _err(fn.__name__.lstrip("_").replace("_", " "), exc) from None

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @contextlib.contextmanager
    def _in(self, ns: NsRef) -> Iterator[netlink.Netlink]:
        """A netlink handle working in ``ns`` (the kernel thread is inside ``ns`` meanwhile)."""
        if ns is None:
            with netlink.Netlink() as nl:
                yield nl
            return
        with contextlib.ExitStack() as stack:
            try:
                fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC) if isinstance(ns, str) else ns
            except FileNotFoundError:
                raise NamespaceGone(f"namespace {ns} does not exist") from None
            if isinstance(ns, str):
                stack.callback(os.close, fd)
            try:
                stack.enter_context(netns.entered_fd(fd))
            except OSError as exc:
                raise NamespaceGone(f"cannot enter namespace {ns}: {exc}") from None
            yield stack.enter_context(netlink.Netlink())

    # --- bridge and host settings ---------------------------------------------------------------

    async def setup(self) -> None:
        """Sysctls of the proxy namespace and ``bridge0`` (created once, never recreated), up."""
        await self._call(self._setup)

    def _setup(self) -> None:
        if 4 in self.families:
            for name in ("net.ipv4.conf.all.forwarding", "net.ipv4.fib_multipath_hash_policy"):
                _sysctl(name, 1)
            for name in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
                         "net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects"):
                _sysctl(name, 0)
        if 6 in self.families:
            for name in ("net.ipv6.conf.all.forwarding", "net.ipv6.fib_multipath_hash_policy"):
                _sysctl(name, 1)
            for name in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
                _sysctl(name, 0)
        with netlink.Netlink() as nl:
            # A fixed random MAC: a bridge would otherwise take its lowest port MAC, which changes as
            # ports come and go and would break the targets' neighbour entries of their gateway.
            nl.add_bridge(self.bridge, mac=_random_mac(), mcast_snooping=False)
            if 6 in self.families:
                _sysctl(f"net.ipv6.conf.{self.bridge}.keep_addr_on_down", 1)
                _sysctl(f"net.ipv6.conf.{self.bridge}.accept_dad", 0)
            nl.set_link(self.bridge, mtu=self.mtu, up=True)

    async def set_bridge_addresses(self, addresses: Iterable[str]) -> None:
        await self._call(self._set_bridge_addresses, tuple(addresses))

    def _set_bridge_addresses(self, addresses: tuple[str, ...]) -> None:
        with netlink.Netlink() as nl:
            _sync_addresses(nl, self.bridge, addresses)

    async def bridge_addresses(self) -> tuple[str, ...]:
        """The addresses bridge0 has now (``()`` if it does not exist yet)."""
        return await self._call(self._bridge_addresses)

    def _bridge_addresses(self) -> tuple[str, ...]:
        with netlink.Netlink() as nl:
            return tuple(sorted(_addresses(nl, self.bridge), key=plan.address_key))

    # --- observation ----------------------------------------------------------------------------

    async def interface_stats(self) -> list[netlink.InterfaceStats]:
        """Counters of every interface of the proxy namespace (one netlink dump, for a scrape).

        Not on the kernel thread: a scrape should not wait behind a reconcile, and only that thread ever
        leaves the proxy's namespace (the default executor's threads stay in the one the process has)."""
        return await asyncio.to_thread(self._guarded, self._interface_stats)

    @staticmethod
    def _interface_stats() -> list[netlink.InterfaceStats]:
        with netlink.Netlink() as nl:
            return nl.interface_stats()

    async def ports(self) -> list[Port]:
        """Every interface of the proxy namespace."""
        return await self._call(self._ports)

    def _ports(self) -> list[Port]:
        with netlink.Netlink() as nl:
            return nl.links()

    async def far_end(self, ns: NsRef, index: int) -> FarEnd | None:
        """The interface ``index`` of ``ns`` (``None`` if absent; :class:`NamespaceGone` if ``ns`` is)."""
        return await self._call(self._far_end, ns, index)

    def _far_end(self, ns: NsRef, index: int) -> FarEnd | None:
        with self._in(ns) as nl:
            link = nl.link_details(index) if index > 0 else None
            if link is None:
                return None
            return FarEnd(link.name, index, link.alias, link.peer_index, _addresses(nl, link.name))

    # --- links ----------------------------------------------------------------------------------

    async def create_link(self, *, port: str, port_alias: str, ns: NsRef, far_name: str, far_alias: str) -> int:
        """A veth ``port`` (bridge0 port, up) whose other end ``far_name`` is born inside ``ns`` (down,
        unaddressed). Returns the far end's index. :class:`NameTaken` if ``far_name`` is used there."""
        return await self._call(self._create_link, port, port_alias, ns, far_name, far_alias)

    def _create_link(self, port: str, port_alias: str, ns: NsRef, far_name: str, far_alias: str) -> int:
        if ns is None:
            raise KernelError("create link: the far end needs another namespace")
        with self._in(ns) as far:
            if far.link_index(far_name) is not None:
                raise NameTaken(f"interface {far_name} already exists in the namespace")
        fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC) if isinstance(ns, str) else ns
        try:
            with netlink.Netlink() as nl:
                nl.delete_link(port)  # a stale port of the same name (callers remove what they replace)
                try:
                    peer = nl.add_veth_into(port, far_name, peer_netns_fd=fd)
                except netlink.NetlinkError as exc:
                    if exc.code == errno.EEXIST:
                        raise NameTaken(f"interface {far_name} already exists in the namespace") from None
                    raise
                nl.set_alias(port, port_alias)
                nl.set_link(port, mtu=self.mtu, master=self.bridge)
                nl.set_link(port, up=True)
        finally:
            if isinstance(ns, str):
                os.close(fd)
        with self._in(ns) as far:
            far.set_alias(far_name, far_alias)
            far.set_link(far_name, mtu=self.mtu)
        return peer

    async def create_tunnel(self, *, port: str, port_alias: str, vni: int, local: str, remote: str) -> None:
        """A VXLAN ``port`` (bridge0 port, MTU, up) from ``local`` to ``remote``: this proxy's end of a
        cross-node link. :class:`NameTaken` when another tunnel here has ``vni``."""
        await self._call(self._create_tunnel, port, port_alias, vni, local, remote)

    def _create_tunnel(self, port: str, port_alias: str, vni: int, local: str, remote: str) -> None:
        with netlink.Netlink() as nl:
            nl.delete_link(port)  # a stale port of the same name (callers remove what they replace)
            try:
                nl.add_vxlan(port, vni=vni, local=local, remote=remote, mtu=self.mtu)
            except netlink.NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise NameTaken(f"vni {vni} is used by another tunnel in the proxy's namespace") from None
                raise
            nl.set_alias(port, port_alias)
            nl.set_link(port, master=self.bridge)
            nl.set_link(port, up=True)

    async def tunnel(self, port: str) -> netlink.VxlanInfo | None:
        """The tunnel parameters of ``port`` (``None``: absent, or not a tunnel)."""
        return await self._call(self._tunnel, port)

    def _tunnel(self, port: str) -> netlink.VxlanInfo | None:
        with netlink.Netlink() as nl:
            return nl.vxlan_info(port)

    async def set_port_alias(self, name: str, alias: str) -> None:
        await self._call(self._set_port_alias, name, alias)

    def _set_port_alias(self, name: str, alias: str) -> None:
        with netlink.Netlink() as nl:
            nl.set_alias(name, alias)

    async def delete_port(self, name: str) -> bool:
        """Delete a veth by its proxy-side name (its other end goes too); ``False`` if it was gone."""
        return await self._call(self._delete_port, name)

    def _delete_port(self, name: str) -> bool:
        with netlink.Netlink() as nl:
            if nl.link_index(name) is None:
                return False
            nl.delete_link(name)
            return True

    def _prepare_far_end(self, nl: netlink.Netlink, name: str) -> int:
        index = nl.link_index(name)
        if index is None:
            raise KernelError(f"interface {name} does not exist in its namespace")
        if 6 in self.families:
            # Before "up", so the link-local address skips DAD too; keep addresses if the LB sets it down.
            _sysctl(f"net.ipv6.conf.{name}.accept_dad", 0, missing_ok=True)
            _sysctl(f"net.ipv6.conf.{name}.keep_addr_on_down", 1, missing_ok=True)
        nl.set_link(name, mtu=self.mtu)
        return index

    async def configure_lb_end(self, ns: NsRef, name: str, addresses: Iterable[str], *, up: bool = True) -> None:
        """Addresses (``nodad``), MTU and IPv6 sysctls of the LB end of a link; bring it up."""
        await self._call(self._configure_lb_end, ns, name, tuple(addresses), up)

    def _configure_lb_end(self, ns: NsRef, name: str, addresses: tuple[str, ...], up: bool) -> None:
        with self._in(ns) as nl:
            self._prepare_far_end(nl, name)
            _sync_addresses(nl, name, addresses)
            if up:
                nl.set_link(name, up=True)

    async def forget_neighbours(self, addresses: Iterable[str]) -> None:
        """Drop this namespace's neighbour entries of ``addresses`` (``ip/len`` or ``ip``).

        A re-created link gets a new MAC on its far end while keeping its IPAM address: an entry of the
        old link would blackhole egress towards that LB until the kernel expired it (~30 s).
        """
        await self._call(self._forget_neighbours, tuple(addresses))

    def _forget_neighbours(self, addresses: tuple[str, ...]) -> None:
        with netlink.Netlink() as nl:
            for cidr in addresses:
                nl.delete_neighbours(cidr.split("/")[0])

    async def configure_target_end(self, ns: NsRef, name: str, state: plan.IfaceState) -> int:
        """Make a target interface hold exactly ``state`` (addresses, ``from`` rules, default routes via
        the bridge addresses, ``onlink``) in its own table; returns that table."""
        return await self._call(self._configure_target_end, ns, name, state)

    def _configure_target_end(self, ns: NsRef, name: str, state: plan.IfaceState) -> int:
        with self._in(ns) as nl:
            table = plan.target_table(self._prepare_far_end(nl, name))
            _sync_addresses(nl, name, state.addresses)
            nl.set_link(name, up=True)
            gw = {ipaddress.ip_address(g).version: g for g in state.gateways}
            for fam in sorted(set(self.families) | set(gw)):
                _set_default(nl, fam, table, (gw[fam],) if fam in gw else (), name, onlink=True)
            _sync_rules(nl, table, state.rules, TARGET_RULE_PRIORITY)
            return table

    async def clear_target_end(self, ns: NsRef, name: str) -> None:
        """Remove the rules and routes of a target interface's table (before the link is deleted)."""
        await self._call(self._clear_target_end, ns, name)

    def _clear_target_end(self, ns: NsRef, name: str) -> None:
        with self._in(ns) as nl:
            index = nl.link_index(name)
            if index is None:
                return
            table = plan.target_table(index)
            _sync_rules(nl, table, (), TARGET_RULE_PRIORITY)
            for fam in (4, 6):
                _set_default(nl, fam, table, (), name, onlink=True)

    # --- egress ---------------------------------------------------------------------------------

    async def set_egress(self, egress: plan.Egress, *, rules: bool = True, routes: bool = True) -> None:
        """Table 1 default routes via the LB ends and ``from <VIP> lookup 1`` rules, as ``egress`` says."""
        await self._call(self._set_egress, egress, rules, routes)

    def _set_egress(self, egress: plan.Egress, rules: bool, routes: bool) -> None:
        with netlink.Netlink() as nl:
            if routes:
                for fam, hops in egress.nexthops.items():
                    _set_default(nl, fam, plan.EGRESS_TABLE, hops, self.bridge, onlink=False)
            if rules:
                _sync_rules(nl, plan.EGRESS_TABLE, egress.rules, EGRESS_RULE_PRIORITY)

    async def egress_state(self) -> tuple[frozenset[str], dict[int, tuple[str, ...] | None]]:
        """Observed ``from`` rules into table 1 and its default next hops per family (for tests/logs)."""
        return await self._call(self._egress_state)

    def _egress_state(self) -> tuple[frozenset[str], dict[int, tuple[str, ...] | None]]:
        with netlink.Netlink() as nl:
            return (frozenset(_rules(nl, plan.EGRESS_TABLE)),
                    {f: nl.default_nexthops(table=plan.EGRESS_TABLE, family=_AF[f]) for f in (4, 6)})
