"""Links from bridge0 to every LB replica of the conduit (part of the proxy's state; no lock of its own).

Each announced replica (:class:`~meridio.proxy.plan.LbPeer`) gets a veth: ``pl-<hash>`` enslaved to
bridge0 here, ``<ifprefix>-<hash4>`` inside the replica's namespace with the address IPAM gives child
``lb:<identifier>-src`` (``nodad``, ``keep_addr_on_down``, MTU). Those addresses are the next hops of the
egress multipath route. Replicas that stop announcing themselves lose their link; their address is
released after the release delay. A restarted proxy adopts the links it finds (by alias) instead of
recreating them, so the LB ends keep their addresses and no traffic is lost.

A replica on another node (it announced its node, pod addresses and ConduitLink port, and this proxy
knows its own pod addresses) is linked with a VXLAN tunnel instead, each end made in its own namespace:
``pl-<hash>`` here is a VXLAN port of bridge0 from this pod's address to the replica's (one family, IPv4
first), and the replica makes its end when asked (:mod:`meridio.api.conduitlinkclient`) with the same
VNI (:func:`meridio.proxy.names.vni`; a VNI taken on either side moves both ends to the next candidate),
the addresses IPAM gives child ``lb:<identifier>-src`` and the conduit MTU. The same L2 segment results:
the replica's end is one more port of bridge0, as far as ARP/ND, the targets and egress ECMP can tell.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping

from meridio.api import conduitlinkclient
from meridio.common.retry import PermanentError, TemporaryError
from meridio.proxy import addressing, dataplane, names, plan
from meridio.proxy.context import Context

__all__ = ["LbLink", "LbLinks"]

_NAME_ATTEMPTS = 4
_VNI_ATTEMPTS = 8


@dataclasses.dataclass
class LbLink:
    peer: plan.LbPeer
    port: str
    far_name: str
    addresses: tuple[str, ...]
    tunnel: tuple[tuple[str, str], int] | None = None
    """((this pod's address, the replica's), VNI) of a cross-node link; ``None`` for a veth."""


class LbLinks:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._log = ctx.log.bind(side="lb")
        self.links: dict[str, LbLink] = {}
        self.peers: dict[str, plan.LbPeer] = {}
        self.known = False
        """Whether the list of replicas has been received once (before that, nothing is removed)."""
        self._found: dict[str, dataplane.Port] = {}
        self._failing: dict[str, str] = {}
        """Last error per replica: a failure repeated on every check is logged once, then at debug."""

    def addresses(self) -> list[str]:
        """Addresses of the LB ends of every established link (egress next hops)."""
        return [a for link in self.links.values() for a in link.addresses]

    async def recover(self, ports: Iterable[dataplane.Port]) -> None:
        """Remember the LB ports a previous run left (adopted or removed once the replicas are known)."""
        for port in ports:
            alias = names.parse_alias(port.alias)
            if names.is_lb_port(port.name) and isinstance(alias, names.LbPortAlias):
                self._found[alias.identifier] = port
        if self._found:
            self._log.info("lbLinksFound", count=len(self._found), identifiers=sorted(self._found))

    async def set_peers(self, peers: Mapping[str, plan.LbPeer]) -> bool:
        """Link to exactly ``peers``; returns whether the set of established links changed."""
        self.peers, self.known = dict(peers), True
        return await self.reconcile()

    async def reconcile(self, present: set[str] | None = None) -> bool:
        """Remove links of vanished replicas, (re)create missing ones; ``present``: port names that exist
        (``None``: trust the recorded state)."""
        if not self.known:
            return False
        changed = False
        for ident, link in list(self.links.items()):
            lost = present is not None and link.port not in present
            if self.peers.get(ident) != link.peer or lost:
                await self._remove(link, reason="portLost" if lost else "lbGone", delete=not lost)
                changed = True
        for ident, port in list(self._found.items()):
            if ident not in self.peers:
                del self._found[ident]
                await self._ctx.dp.delete_port(port.name)
                self._ctx.releases.start(addressing.lb_child(ident), self._ctx.monotonic())
                self._log.info("lbLinkRemoved", lb=ident, reason="lbGone")
        for ident, peer in sorted(self.peers.items()):
            if ident not in self.links:
                changed |= await self._establish(peer)
        return changed

    async def _remove(self, link: LbLink, *, reason: str, delete: bool = True) -> None:
        del self.links[link.peer.identifier]
        if delete:
            await self._ctx.dp.delete_port(link.port)
        if link.tunnel is not None:
            await self._disconnect(link.peer, link.tunnel[0][1])
        self._ctx.releases.start(addressing.lb_child(link.peer.identifier), self._ctx.monotonic())
        self._log.info("lbLinkRemoved", lb=link.peer.identifier, reason=reason)

    async def _establish(self, peer: plan.LbPeer) -> bool:
        log = self._log.bind(lb=peer.identifier, netns=peer.netns)
        try:
            link = await self._adopt(peer) or await self._create(peer)
        except (TemporaryError, dataplane.KernelError, PermanentError) as exc:
            repeated = self._failing.get(peer.identifier) == str(exc)
            (log.debug if repeated else log.warning)("lbLinkFailed", error=str(exc), reason=type(exc).__name__)
            self._failing[peer.identifier] = str(exc)
            return False
        self._failing.pop(peer.identifier, None)
        self.links[peer.identifier] = link
        log.info("lbLinkUp", port=link.port, interface=link.far_name, addresses=list(link.addresses))
        return True

    async def _adopt(self, peer: plan.LbPeer) -> LbLink | None:
        """Keep the link a previous run made, if its far end is still in the replica's namespace."""
        port = self._found.pop(peer.identifier, None)
        if port is None:
            return None
        if peer.remote_on(self._ctx.config.node) or port.kind == "vxlan":
            return await self._adopt_tunnel(peer, port)
        ns = dataplane.netns_path(peer.netns)
        far = None
        if port.peer_index is not None:
            try:
                far = await self._ctx.dp.far_end(ns, port.peer_index)
            except dataplane.NamespaceGone:
                far = None
        if far is None or far.peer_index != port.index or not isinstance(names.parse_alias(far.alias),
                                                                           names.FarEndAlias):
            await self._ctx.dp.delete_port(port.name)
            return None
        try:
            addresses = await self._ctx.ipam.allocate(addressing.lb_child(peer.identifier))
        except TemporaryError as exc:
            # Keep what is on the LB end: egress must not lose a next hop because IPAM is slow.
            self._log.warning("lbAddressesKept", lb=peer.identifier, error=str(exc))
            addresses = tuple(sorted(far.addresses))
        await self._ctx.dp.configure_lb_end(ns, far.name, addresses)
        self._log.info("lbLinkAdopted", lb=peer.identifier, port=port.name)
        return LbLink(peer, port.name, far.name, addresses)

    async def _adopt_tunnel(self, peer: plan.LbPeer, port: dataplane.Port) -> LbLink | None:
        """Keep a tunnel a previous run made if it still goes to the replica; its end there is asked for
        again (idempotent: an end that is as asked is kept)."""
        info = await self._ctx.dp.tunnel(port.name)
        ends = self._tunnel_ends(peer) if peer.remote_on(self._ctx.config.node) else None
        if info is None or ends is None or (info.local, info.remote) != ends:
            await self._ctx.dp.delete_port(port.name)
            return None
        addresses = await self._ctx.ipam.allocate(addressing.lb_child(peer.identifier))
        reply = await self._connect(peer, ends, info.vni, addresses)
        self._log.info("lbLinkAdopted", lb=peer.identifier, port=port.name, vni=info.vni)
        return LbLink(peer, port.name, reply.interface_name, addresses, (ends, info.vni))

    def _tunnel_ends(self, peer: plan.LbPeer) -> tuple[str, str] | None:
        """(this pod's address, the replica's) in the first family both have, IPv4 first."""
        for version in (4, 6):
            mine = [a for a in self._ctx.config.pod_ips if ipaddress.ip_address(a).version == version]
            theirs = [a for a in peer.addresses if ipaddress.ip_address(a).version == version]
            if mine and theirs:
                return mine[0], theirs[0]
        return None

    async def _connect(self, peer: plan.LbPeer, ends: tuple[str, str], vni: int,
                       addresses: tuple[str, ...]) -> conduitlinkclient.Reply:
        if self._ctx.lb_links is None:
            raise TemporaryError("cross-node links are off in this proxy (no pod address)")
        cfg = self._ctx.config
        return await self._ctx.lb_links.connect(ends[1], peer.link_port, conduitlinkclient.ConnectArgs(
            trench=cfg.trench, conduit=cfg.conduit, node=cfg.node, vni=vni, remote=ends[0], addresses=addresses,
            mtu=cfg.mtu))

    async def _disconnect(self, peer: plan.LbPeer, host: str) -> None:
        """Best effort: a replica that is gone or unreachable has no end to remove (or removes it itself)."""
        if self._ctx.lb_links is None:
            return
        cfg = self._ctx.config
        try:
            await self._ctx.lb_links.disconnect(host, peer.link_port, trench=cfg.trench, conduit=cfg.conduit,
                                                node=cfg.node)
        except (TemporaryError, PermanentError) as exc:
            self._log.debug("lbTunnelDisconnectFailed", lb=peer.identifier, error=str(exc))

    async def _create_tunnel(self, peer: plan.LbPeer) -> LbLink:
        cfg = self._ctx.config
        ends = self._tunnel_ends(peer)
        if ends is None:
            raise PermanentError(f"no common IP family between this proxy's pod addresses {list(cfg.pod_ips)} "
                                 f"and the replica's {list(peer.addresses)}")
        self._ctx.releases.cancel(addressing.lb_child(peer.identifier))
        addresses = await self._ctx.ipam.allocate(addressing.lb_child(peer.identifier))
        port = names.lb_port_name(peer.identifier)
        for attempt in range(_VNI_ATTEMPTS):
            vni = names.vni(trench=cfg.trench, conduit=cfg.conduit, node=cfg.node, identifier=peer.identifier,
                            attempt=attempt)
            try:
                await self._ctx.dp.create_tunnel(port=port, port_alias=names.LbPortAlias(peer.identifier).render(),
                                                 vni=vni, local=ends[0], remote=ends[1])
            except dataplane.NameTaken:
                continue  # another tunnel here has this VNI
            try:
                reply = await self._connect(peer, ends, vni, addresses)
            except conduitlinkclient.VniTaken:
                await self._ctx.dp.delete_port(port)
                continue
            except BaseException:
                await self._ctx.dp.delete_port(port)
                raise
            await self._ctx.dp.forget_neighbours(addresses)  # the old link's MAC may be cached here
            return LbLink(peer, port, reply.interface_name, addresses, (ends, vni))
        raise TemporaryError(f"no free VNI for the link to {peer.identifier} after {_VNI_ATTEMPTS} candidates")

    async def _create(self, peer: plan.LbPeer) -> LbLink:
        if peer.remote_on(self._ctx.config.node):
            return await self._create_tunnel(peer)
        cfg = self._ctx.config
        self._ctx.releases.cancel(addressing.lb_child(peer.identifier))
        addresses = await self._ctx.ipam.allocate(addressing.lb_child(peer.identifier))
        port = names.lb_port_name(peer.identifier)
        ns = dataplane.netns_path(peer.netns)
        far_alias = names.FarEndAlias(cfg.trench, cfg.conduit, cfg.node).render()
        for attempt in range(_NAME_ATTEMPTS):
            far = names.lb_far_name(peer.ifprefix, trench=cfg.trench, conduit=cfg.conduit, node=cfg.node,
                                    attempt=attempt)
            try:
                await self._ctx.dp.create_link(port=port, port_alias=names.LbPortAlias(peer.identifier).render(),
                                               ns=ns, far_name=far, far_alias=far_alias)
            except dataplane.NameTaken:
                continue
            try:
                await self._ctx.dp.configure_lb_end(ns, far, addresses)
                await self._ctx.dp.forget_neighbours(addresses)  # the old link's MAC may be cached here
            except dataplane.KernelError:
                await self._ctx.dp.delete_port(port)
                raise
            return LbLink(peer, port, far, addresses)
        raise dataplane.NameTaken(f"no free interface name with prefix {peer.ifprefix!r} in {peer.netns}")

    async def renew(self) -> bool:
        """Allocate every link's address again (refresh at IPAM); fix a link whose address changed."""
        changed = False
        for link in list(self.links.values()):
            addresses = await self._ctx.ipam.allocate(addressing.lb_child(link.peer.identifier))
            if link.tunnel is not None:  # ask again: repairs an end the replica lost
                try:
                    await self._connect(link.peer, link.tunnel[0], link.tunnel[1], addresses)
                except (TemporaryError, PermanentError) as exc:  # one replica must not stop the others' renewal
                    self._log.warning("lbTunnelRenewFailed", lb=link.peer.identifier, error=str(exc))
            if addresses != link.addresses and link.tunnel is None:
                await self._ctx.dp.configure_lb_end(dataplane.netns_path(link.peer.netns), link.far_name,
                                                    addresses)
                self._log.warning("lbAddressesChanged", lb=link.peer.identifier, old=list(link.addresses),
                                  new=list(addresses))
                link.addresses = addresses
                changed = True
        return changed
