"""The LB replica's end of cross-node conduit links: ``meridio.loadbalancer.v1.ConduitLink``.

A proxy on another node cannot reach into this replica's namespace, so it makes its end of a VXLAN
tunnel on its own bridge and asks the LB (over the pod network, mutual TLS) to make the other end here:
a point-to-point VXLAN interface ``<ifprefix>-<hash4>`` (the name prefix of the LB's target-side links,
so the data path treats it as it treats a veth from a proxy on this node) from this pod's address to
the proxy's, with the VNI the proxy chose, the addresses IPAM gave the proxy for this replica, the
conduit MTU, a MAC derived from the link's identity (a link made again keeps it, so the proxy's
bridge and the targets' neighbour caches stay right) and the alias ``conduit-link <trench>/<conduit>/<node>``
(how a restarted LB finds it again).

Who may ask (:func:`authorize`): a proxy of this trench, for its own node only. A request is parsed
once (:func:`request_from_pb`): a bad field is ``INVALID_ARGUMENT`` naming it, and nothing changes.
A VNI already used by another tunnel in this namespace is ``ALREADY_EXISTS``: the proxy then derives
the next VNI for the link (both ends always agree, because the proxy picks and the LB only accepts or
refuses). :class:`Links` owns the interfaces (one lock: one change at a time).

Routing of the tunnel itself: the kernel looks up the route of a VXLAN packet with the mark of the frame
it carries, and the LB marks every VIP packet for its target's table (``fwmark X lookup X``: default via
the target). So that the outer packet is not sent into that table (back into the tunnel), each link gets
``to <proxy pod address> lookup main`` ahead of the fwmark rules (:data:`TUNNEL_RULE_PRIORITY`).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import ipaddress
import re
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio

from meridio.api.pb.meridio.loadbalancer.v1 import conduitlink_pb2, conduitlink_pb2_grpc
from meridio.common import grpcutil
from meridio.common import identity as identitymod
from meridio.common import log as logmod
from meridio.kernel import netlink

__all__ = ["ALIAS_PREFIX", "DEFAULT_PORT", "Kernel", "LinkRequest", "Links", "NetlinkKernel", "Servicer", "VniTaken",
           "authorize", "end_mac", "end_name", "request_from_pb"]

TUNNEL_RULE_PRIORITY = 80
"""Before the LB's ``fwmark X lookup X`` rules (90 by default)."""
DEFAULT_PORT = 7779
"""TCP port of the ConduitLink service (next to Meridio's 7777/7778)."""
ALIAS_PREFIX = "conduit-link "
MAX_VNI = 2**24 - 1
_MAIN = 254
T = TypeVar("T")
_NODE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


class VniTaken(Exception):
    """Another tunnel in this namespace has the VNI (on the VXLAN port): the proxy picks the next one."""


@dataclasses.dataclass(frozen=True)
class LinkRequest:
    node: str
    vni: int
    remote: str
    addresses: tuple[str, ...]
    mtu: int


def request_from_pb(req: conduitlink_pb2.ConnectRequest, *, trench: str, conduit: str) -> LinkRequest:
    """The request, checked field by field (:class:`~meridio.common.grpcutil.InvalidArgument` names it)."""
    _ours(req.trench, req.conduit, trench=trench, conduit=conduit)
    node = _node(req.node)
    if not 1 <= req.vni <= MAX_VNI:
        raise grpcutil.InvalidArgument(f"vni: {req.vni} must be between 1 and {MAX_VNI}")
    try:
        remote = ipaddress.ip_address(req.remote)
    except ValueError:
        raise grpcutil.InvalidArgument(f"remote: {req.remote[:64]!r} is not an IP address") from None
    addresses = []
    for i, text in enumerate(req.addresses):
        try:
            addresses.append(str(ipaddress.ip_interface(text)))
        except ValueError:
            raise grpcutil.InvalidArgument(f"addresses[{i}]: {text[:64]!r} is not address/prefix-length") from None
    if not addresses:
        raise grpcutil.InvalidArgument("addresses: at least one address is needed")
    mtu = req.mtu or 1500
    least = 1280 if any(":" in a for a in addresses) else 576
    if not least <= mtu <= 65535:
        raise grpcutil.InvalidArgument(f"mtu: {mtu} must be between {least} and 65535")
    return LinkRequest(node, req.vni, str(remote), tuple(sorted(addresses)), mtu)


def _ours(trench_: str, conduit_: str, *, trench: str, conduit: str) -> None:
    if trench_ != trench:
        raise grpcutil.InvalidArgument(f"trench: {trench_[:64]!r} is not this LB's trench {trench!r}")
    if conduit_ != conduit:
        raise grpcutil.InvalidArgument(f"conduit: {conduit_[:64]!r} is not this LB's conduit {conduit!r}")


def _node(text: str) -> str:
    if not _NODE.match(text):
        raise grpcutil.InvalidArgument(f"node: {text[:64]!r} is not a node name (lowercase letters, digits, '-', '.')")
    return text


def authorize(caller: identitymod.Identity, *, trench: str, node: str) -> None:
    """Only a proxy of this LB's trench, for its own node (``PERMISSION_DENIED`` otherwise)."""
    who = f"{caller.component.value} {caller.pod}"
    if caller.component is not identitymod.Component.PROXY:
        raise grpcutil.PermissionDenied(f"{who} may not make conduit links (only a proxy)")
    if caller.trench != trench:
        raise grpcutil.PermissionDenied(f"{who} belongs to trench {caller.trench or ''!r}, this LB to {trench!r}")
    if caller.node != node:
        raise grpcutil.PermissionDenied(f"node: {node!r} is not the node of {who} ({caller.node or ''!r})")


def end_name(ifprefix: str, *, trench: str, conduit: str, node: str) -> str:
    """``<ifprefix>-<4 hex>``: at most 15 characters, stable for the (trench, conduit, node) link."""
    digest = hashlib.sha256(f"vxlan/{trench}/{conduit}/{node}".encode()).hexdigest()[:4]
    return f"{ifprefix[:10]}-{digest}"


def end_mac(identifier: str, *, trench: str, conduit: str, node: str) -> str:
    """A locally administered unicast MAC, stable for this replica's end of the link."""
    digest = hashlib.sha256(f"{identifier}/{trench}/{conduit}/{node}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


class Kernel(Protocol):
    """The interfaces of this namespace the LB end needs (blocking; called in a worker thread)."""

    def vxlan_info(self, name: str) -> netlink.VxlanInfo | None: ...

    def create(self, name: str, *, vni: int, local: str, remote: str, mac: str, mtu: int, alias: str) -> None: ...

    def route_to_main(self, remote: str, *, keep: bool) -> None: ...

    def configure(self, name: str, addresses: Sequence[str]) -> None: ...

    def delete(self, name: str) -> None: ...

    def find_alias(self, alias: str) -> list[str]: ...


class NetlinkKernel:
    """:class:`Kernel` on this process's own namespace."""

    def __init__(self, nl: netlink.Netlink) -> None:
        self._nl = nl

    def vxlan_info(self, name: str) -> netlink.VxlanInfo | None:
        return self._nl.vxlan_info(name)

    def create(self, name: str, *, vni: int, local: str, remote: str, mac: str, mtu: int, alias: str) -> None:
        try:
            self._nl.add_vxlan(name, vni=vni, local=local, remote=remote, mac=mac, mtu=mtu)
        except netlink.NetlinkError as exc:
            if exc.code == errno.EEXIST:  # the name was checked free: the VNI is another tunnel's
                raise VniTaken(f"vni {vni} is used by another tunnel in this namespace") from None
            raise
        self._nl.set_alias(name, alias)
        with contextlib.suppress(OSError):  # an IPv4-only namespace has no such file
            netlink.set_sysctl(f"net.ipv6.conf.{name}.keep_addr_on_down", "1")

    def route_to_main(self, remote: str, *, keep: bool) -> None:
        fam = netlink.family_of(remote)
        rule = netlink.RuleInfo(fam, TUNNEL_RULE_PRIORITY, _MAIN, dst=str(ipaddress.ip_network(remote)))
        if keep:
            self._nl.add_rule(priority=TUNNEL_RULE_PRIORITY, table=_MAIN, family=fam, dst=remote)
        elif rule in self._nl.rules(family=fam):
            self._nl.delete_rule(rule)

    def configure(self, name: str, addresses: Sequence[str]) -> None:
        have = {str(ipaddress.ip_interface(a)) for a in self._nl.addresses(name)
                if not ipaddress.ip_interface(a).ip.is_link_local}
        for a in sorted(have - set(addresses)):
            self._nl.delete_address(name, a)
        for a in sorted(set(addresses) - have):
            self._nl.add_address(name, a, nodad=True)
        self._nl.set_link(name, up=True)

    def delete(self, name: str) -> None:
        self._nl.delete_link(name)

    def find_alias(self, alias: str) -> list[str]:
        return [link.name for link in self._nl.links() if link.alias == alias]


class Links:
    """This replica's ends of cross-node links (the one owner of those interfaces)."""

    def __init__(self, kernel: Kernel, *, identifier: str, trench: str, conduit: str, ifprefix: str,
                 local: Sequence[str], log: logmod.Logger = logmod.null) -> None:
        self._kernel, self.identifier, self.trench, self.conduit = kernel, identifier, trench, conduit
        self.ifprefix = ifprefix
        self.local = tuple(local)
        """This pod's addresses on the pod network (tunnel sources, one per family)."""
        self._log = log.bind(side="conduitLink")
        self._lock = asyncio.Lock()

    def _alias(self, node: str) -> str:
        return f"{ALIAS_PREFIX}{self.trench}/{self.conduit}/{node}"

    def _local_for(self, remote: str) -> str:
        version = ipaddress.ip_address(remote).version
        for a in self.local:
            if ipaddress.ip_address(a).version == version:
                return a
        raise grpcutil.FailedPrecondition(f"remote: this LB has no IPv{version} pod address to reach {remote}")

    async def connect(self, req: LinkRequest) -> tuple[str, str]:
        """Make (or keep) the end towards ``req.node``'s proxy; returns (interface name, local address)."""
        local = self._local_for(req.remote)
        name = end_name(self.ifprefix, trench=self.trench, conduit=self.conduit, node=req.node)
        mac = end_mac(self.identifier, trench=self.trench, conduit=self.conduit, node=req.node)
        async with self._lock:
            have = await asyncio.to_thread(self._kernel.vxlan_info, name)
            wanted = (req.vni, local, req.remote, netlink.VXLAN_PORT, mac, req.mtu)
            if have is None or (have.vni, have.local, have.remote, have.port, have.mac, have.mtu) != wanted:
                if have is not None:
                    await asyncio.to_thread(self._kernel.delete, name)
                await asyncio.to_thread(self._kernel.create, name, vni=req.vni, local=local, remote=req.remote,
                                        mac=mac, mtu=req.mtu, alias=self._alias(req.node))
                self._log.info("conduitLinkUp", node=req.node, interface=name, vni=req.vni, remote=req.remote)
            await asyncio.to_thread(self._kernel.route_to_main, req.remote, keep=True)
            await asyncio.to_thread(self._kernel.configure, name, req.addresses)
        return name, local

    async def disconnect(self, node: str) -> bool:
        """Remove the end towards ``node``'s proxy; returns whether there was one."""
        async with self._lock:
            names = await asyncio.to_thread(self._kernel.find_alias, self._alias(node))
            for name in names:
                info = await asyncio.to_thread(self._kernel.vxlan_info, name)
                await asyncio.to_thread(self._kernel.delete, name)
                if info is not None:
                    await asyncio.to_thread(self._kernel.route_to_main, info.remote, keep=False)
        if names:
            self._log.info("conduitLinkRemoved", node=node, interfaces=names)
        return bool(names)


class Servicer(conduitlink_pb2_grpc.ConduitLinkServicer):
    """Thin: decode, authorize the caller, call :class:`Links`, encode."""

    def __init__(self, links: Links, *, log: logmod.Logger = logmod.null, check_identity: bool = True) -> None:
        self._links, self._log = links, log
        self._check_identity = check_identity
        """Off only in insecure mode (no certificates: no identity to check), as every component's policy."""

    def _authorize(self, context: grpc.aio.ServicerContext, node: str) -> None:
        if self._check_identity:
            authorize(grpcutil.peer_identity(context), trench=self._links.trench, node=node)

    async def Connect(self, request: conduitlink_pb2.ConnectRequest,  # noqa: N802 (gRPC method name)
                      context: grpc.aio.ServicerContext) -> conduitlink_pb2.ConnectResponse:
        return await _handled(context, self._log, self._connect(request, context))

    async def _connect(self, request: conduitlink_pb2.ConnectRequest,
                       context: grpc.aio.ServicerContext) -> conduitlink_pb2.ConnectResponse:
        req = request_from_pb(request, trench=self._links.trench, conduit=self._links.conduit)
        self._authorize(context, req.node)
        name, local = await self._links.connect(req)
        return conduitlink_pb2.ConnectResponse(interface_name=name, local=local)

    async def Disconnect(self, request: conduitlink_pb2.DisconnectRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext) -> conduitlink_pb2.DisconnectResponse:
        return await _handled(context, self._log, self._disconnect(request, context))

    async def _disconnect(self, request: conduitlink_pb2.DisconnectRequest,
                          context: grpc.aio.ServicerContext) -> conduitlink_pb2.DisconnectResponse:
        _ours(request.trench, request.conduit, trench=self._links.trench, conduit=self._links.conduit)
        node = _node(request.node)
        self._authorize(context, node)
        await self._links.disconnect(node)
        return conduitlink_pb2.DisconnectResponse()


async def _handled(context: grpc.aio.ServicerContext, log: logmod.Logger, call: Coroutine[Any, Any, T]) -> T:
    """Await ``call``, mapping the project's errors to status codes (``VniTaken`` → ``ALREADY_EXISTS``)."""
    try:
        return await call
    except VniTaken as exc:
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
    except (grpcutil.InvalidArgument, grpcutil.PermissionDenied, grpcutil.Unauthenticated,
            grpcutil.FailedPrecondition) as exc:
        await context.abort(grpcutil.status_for(exc), str(exc))
    except netlink.NetlinkError as exc:
        log.warning("conduitLinkFailed", error=str(exc))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"kernel: {exc}")
    raise AssertionError("unreachable")
