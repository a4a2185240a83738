"""Links from bridge0 into target namespaces, asked for over the link service (part of the proxy's state).

A link belongs to a *target id* (the pod name) and lives in the namespace of the process that asked
for it (its *owner*, pinned by the credential socket). The target end carries the conduit address
(IPAM child ``<target id>-src``), the VIPs of the conduit's flows (``nodad`` host addresses) and, in a
table of its own, ``from <VIP>`` rules to a default route via the bridge addresses (reference §3.10).

Who may ask: with ``Config.pod_netns`` set (the local runtime sets ``/run/netns/<prefix>-pod-{pod}``),
a link for pod P is given only to a caller whose pinned namespace *is* the namespace at that path
(same ``st_dev``/``st_ino``); in Kubernetes that proof would be a namespace fd passed over the
credential socket (``SCM_RIGHTS``), not built yet. Either way, a pod name holding a link from one
namespace is not given to another namespace while that link's namespace exists.

Life cycle: Connect creates it (or re-adopts it: same namespace, same name → same link, new owner);
Disconnect removes it. The proxy also reclaims a link by itself when its target namespace vanishes
(the veth goes with it) or when its owner died and nobody re-adopted the link within the orphan
timeout. In every case the addresses are released only after the release delay, and the release is
cancelled if the same target connects again.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable

from meridio.api.link import Link
from meridio.common.grpcutil import FailedPrecondition
from meridio.common.retry import PermanentError, TemporaryError
from meridio.kernel import pins
from meridio.proxy import addressing, dataplane, names, plan
from meridio.proxy.context import Context

__all__ = ["PermissionDenied", "TargetLink", "TargetLinks", "Unauthenticated"]


class Unauthenticated(PermanentError):
    """The credential is unknown, expired or already used."""


class PermissionDenied(PermanentError):
    """The caller's namespace is not the pod's, or not the one the target id is linked from."""


@dataclasses.dataclass
class TargetLink:
    target_id: str
    interface_name: str
    port: str
    inode: int
    owner: pins.Owner
    pinned: pins.PinnedNs | None
    addresses: tuple[str, ...]
    vips: tuple[str, ...] = ()
    orphan_since: float | None = None


class _Latest:
    """A mailbox keeping only the newest value (a slow watcher skips intermediate states)."""

    def __init__(self) -> None:
        self._value: Link | None = None
        self._event = asyncio.Event()

    def put(self, value: Link) -> None:
        self._value = value
        self._event.set()

    async def get(self) -> Link:
        await self._event.wait()
        self._event.clear()
        assert self._value is not None
        return self._value


class TargetLinks:
    def __init__(self, ctx: Context, bridge: Callable[[], tuple[str, ...]]) -> None:
        self._ctx = ctx
        self._bridge = bridge
        self._log = ctx.log.bind(side="target")
        self.links: dict[str, TargetLink] = {}
        self.conduit_vips: frozenset[str] | None = None
        """VIPs of the conduit's flows; ``None`` until NSP told (VIPs on targets are then left alone)."""
        self._watchers: dict[str, set[_Latest]] = {}

    # --- views ----------------------------------------------------------------------------------

    def gateways(self) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_interface(a).ip) for a in self._bridge())

    def info(self, target_id: str) -> Link:
        cfg = self._ctx.config
        link = self.links.get(target_id)
        if link is None:
            return Link(target_id, conduit=cfg.conduit, trench=cfg.trench, node=cfg.node)
        return Link(target_id, link.interface_name, link.addresses, self.gateways(), link.vips, cfg.mtu,
                        cfg.conduit, cfg.trench, cfg.node)

    async def watch(self, target_id: str) -> AsyncIterator[Link]:
        """The link's state now and after every change (until the caller stops iterating)."""
        box = _Latest()
        self._watchers.setdefault(target_id, set()).add(box)
        try:
            yield self.info(target_id)
            while True:
                yield await box.get()
        finally:
            self._watchers.get(target_id, set()).discard(box)

    def _notify(self, target_id: str) -> None:
        for box in self._watchers.get(target_id, ()):
            box.put(self.info(target_id))

    # --- recovery after a restart ---------------------------------------------------------------

    async def recover(self, ports: Iterable[dataplane.Port]) -> None:
        for port in ports:
            alias = names.parse_alias(port.alias)
            if names.is_target_port(port.name) and isinstance(alias, names.TargetPortAlias):
                await self._recover_one(port, alias)

    async def _recover_one(self, port: dataplane.Port, alias: names.TargetPortAlias) -> None:
        owner = pins.Owner(alias.owner_pid, alias.owner_start)
        pinned = pins.pin_owner(owner, alias.netns_inode)
        far = None
        if pinned is not None and port.peer_index is not None:
            far = await self._ctx.dp.far_end(pinned.ns_fd, port.peer_index)
            if far is None or far.peer_index != port.index:
                pinned.close()
                await self._ctx.dp.delete_port(port.name)
                self._log.warning("targetLinkDropped", target=alias.target_id, reason="farEndMismatch")
                return
        conduit = tuple(a for a in sorted(far.addresses) if not _is_host(a)) if far else ()
        vips = tuple(plan.normalize_prefix(a) for a in sorted(far.addresses) if _is_host(a)) if far else ()
        link = TargetLink(alias.target_id, far.name if far else "", port.name, alias.netns_inode, owner, pinned,
                          conduit, vips, None if pinned else self._ctx.monotonic())
        self.links[link.target_id] = link
        self._log.info("targetLinkFound", target=link.target_id, port=port.name, owner=owner.pid,
                       ownerAlive=pinned is not None)

    # --- Connect / Disconnect -------------------------------------------------------------------

    async def connect(self, target_id: str, interface_name: str, pinned: pins.PinnedNs) -> Link:
        """Link the pinned namespace. ``pinned`` ends up owned by the link, or closed on failure."""
        log = self._log.bind(target=target_id, interface=interface_name)
        try:
            if not pinned.alive():
                raise Unauthenticated("credential: the process that obtained it has exited")
            self._authorise(target_id, pinned)
            existing = self.links.get(target_id)
            if existing is not None and await self._reuse(existing, interface_name, pinned):
                log.info("targetLinkAdopted", owner=existing.owner.pid)
                return self.info(target_id)
            if not self._bridge():
                raise TemporaryError("the bridge has no address yet (IPAM not reachable?): try again")
            link = await self._create(target_id, interface_name, pinned)
        except BaseException:
            if not any(link.pinned is pinned for link in self.links.values()):
                pinned.close()
            raise
        log.info("targetLinkUp", port=link.port, addresses=list(link.addresses), vips=list(link.vips))
        return self.info(target_id)

    def _authorise(self, target_id: str, pinned: pins.PinnedNs) -> None:
        """With ``pod_netns`` set: the caller must be in pod ``target_id``'s namespace."""
        template = self._ctx.config.pod_netns
        if not template:
            return
        path = template.format(pod=target_id)
        same = self._ctx.namespace_at(pinned, path)
        if same is None:
            raise PermissionDenied(f"target_id: pod {target_id[:64]} has no network namespace ({path[:128]})")
        if not same:
            raise PermissionDenied(f"target_id: the caller's network namespace is not pod {target_id[:64]}'s "
                                   f"({path[:128]})")

    async def _reuse(self, link: TargetLink, interface_name: str, pinned: pins.PinnedNs) -> bool:
        """Take over ``link`` for a new Connect of the same target; ``False``: the old link was removed."""
        if link.inode != pinned.inode:
            if link.pinned is not None and link.pinned.alive():
                raise PermissionDenied(f"target_id: {link.target_id} is linked from another network namespace "
                                       f"whose owner is alive")
            # Without the pod's namespace to compare with, the old link's namespace keeps the name while
            # it exists (its veth end goes when it does); with it, the caller just proved to be the pod.
            if not self._ctx.config.pod_netns and any(p.name == link.port for p in await self._ctx.dp.ports()):
                raise PermissionDenied(f"target_id: {link.target_id} is linked from another network namespace "
                                       f"that still exists")
            await self._drop(link, reason="replaced")
            return False
        if link.interface_name != interface_name:
            raise FailedPrecondition(f"interface_name: {link.target_id} is already linked as "
                                     f"{link.interface_name!r}, not {interface_name!r}")
        far = await self._ctx.dp.far_end(pinned.ns_fd, _far_index(await self._ctx.dp.ports(), link.port))
        if far is None or far.name != interface_name:
            await self._drop(link, reason="stale")
            return False
        if link.pinned is not None:
            link.pinned.close()
        link.pinned, link.owner, link.orphan_since = pinned, pinned.owner, None
        await self._ctx.dp.set_port_alias(link.port, _alias(link).render())
        await self._configure(link)
        return True

    async def _create(self, target_id: str, interface_name: str, pinned: pins.PinnedNs) -> TargetLink:
        cfg = self._ctx.config
        child = addressing.target_child(target_id)
        self._ctx.releases.cancel(child)
        addresses = await self._ctx.ipam.allocate(child)
        link = TargetLink(target_id, interface_name, names.target_port_name(target_id), pinned.inode,
                          pinned.owner, pinned, addresses)
        try:
            await self._ctx.dp.create_link(port=link.port, port_alias=_alias(link).render(), ns=pinned.ns_fd,
                                           far_name=interface_name,
                                           far_alias=names.FarEndAlias(cfg.trench, cfg.conduit, cfg.node).render())
        except dataplane.NameTaken:
            self._ctx.releases.start(child, self._ctx.monotonic())
            raise FailedPrecondition(f"interface_name: {interface_name} already exists in the caller's network "
                                     f"namespace") from None
        try:
            await self._configure(link, notify=False)
        except BaseException:
            await self._ctx.dp.delete_port(link.port)  # never a half-configured link
            self._ctx.releases.start(child, self._ctx.monotonic())
            raise
        self.links[target_id] = link
        self._notify(target_id)
        return link

    async def disconnect(self, target_id: str, pinned: pins.PinnedNs) -> bool:
        """Remove the link if the caller's namespace owns it; ``False`` if there was none."""
        try:
            link = self.links.get(target_id)
            if link is None:
                return False
            if link.inode != pinned.inode:
                raise PermissionDenied(f"target_id: {target_id} is linked from another network namespace")
            await self._drop(link, reason="disconnected", ns=pinned.ns_fd)
            return True
        finally:
            pinned.close()

    async def _drop(self, link: TargetLink, *, reason: str, ns: dataplane.NsRef = None,
                    delete: bool = True) -> None:
        """Forget ``link``: clear its routes/rules (if its namespace is reachable), delete the veth,
        schedule the release of its addresses, tell the watchers."""
        ns = ns if ns is not None else (link.pinned.ns_fd if link.pinned else pins.find_netns(link.inode))
        if delete:
            if ns is not None and link.interface_name:
                try:
                    await self._ctx.dp.clear_target_end(ns, link.interface_name)
                except dataplane.KernelError as exc:
                    self._log.debug("targetClearFailed", target=link.target_id, error=str(exc))
            await self._ctx.dp.delete_port(link.port)
        if link.pinned is not None:
            link.pinned.close()
        del self.links[link.target_id]
        self._ctx.releases.start(addressing.target_child(link.target_id), self._ctx.monotonic())
        self._log.info("targetLinkRemoved", target=link.target_id, reason=reason)
        self._notify(link.target_id)

    # --- keeping links current ------------------------------------------------------------------

    async def _configure(self, link: TargetLink, *, notify: bool = True) -> None:
        """Make the target end match the plan (only while its namespace is pinned and gateways known)."""
        bridge = self._bridge()
        if link.pinned is None or not bridge:
            return
        fams = self._ctx.config.families
        vips = plan.target_vips(self.conduit_vips, bridge, fams) if self.conduit_vips is not None else link.vips
        state = plan.target_iface(link.addresses, vips, bridge)
        await self._ctx.dp.configure_target_end(link.pinned.ns_fd, link.interface_name, state)
        new_vips = tuple(sorted(state.rules, key=_prefix_key))
        if new_vips != link.vips:
            self._log.info("targetVipsSet", target=link.target_id, vips=list(new_vips))
        link.vips = new_vips
        if notify:
            self._notify(link.target_id)

    async def set_conduit_vips(self, vips: frozenset[str]) -> None:
        changed = vips != self.conduit_vips
        self.conduit_vips = vips
        if changed:
            await self.reconfigure_all()

    async def reconfigure_all(self) -> None:
        for link in list(self.links.values()):
            try:
                await self._configure(link)
            except dataplane.KernelError as exc:
                self._log.warning("targetConfigureFailed", target=link.target_id, error=str(exc))

    async def check(self, present: set[str]) -> None:
        """Reclaim links whose namespace vanished or whose owner is gone for too long."""
        now = self._ctx.monotonic()
        for link in list(self.links.values()):
            if link.port not in present:
                await self._drop(link, reason="namespaceGone", delete=False)
                continue
            if link.pinned is not None and not self._owner_present(link.target_id, link.pinned):
                # Unpin: if the namespace has no other user it disappears now, and the veth with it.
                link.pinned.close()
                link.pinned, link.orphan_since = None, now
                self._log.info("targetOwnerGone", target=link.target_id, owner=link.owner.pid)
            if link.pinned is None and link.orphan_since is not None \
                    and now - link.orphan_since >= self._ctx.config.orphan_timeout:
                await self._drop(link, reason="orphaned")

    def _owner_present(self, target_id: str, pinned: pins.PinnedNs) -> bool:
        """The owner's process runs; where its pid is not visible (Kubernetes without host PIDs), its
        TAPA still watches the link."""
        if pinned.pid_visible:
            return pinned.alive()
        return bool(self._watchers.get(target_id))

    async def renew(self) -> None:
        """Allocate every link's addresses again (IPAM refresh); fix a link whose address changed."""
        for link in list(self.links.values()):
            addresses = await self._ctx.ipam.allocate(addressing.target_child(link.target_id))
            if addresses != link.addresses:
                self._log.warning("targetAddressesChanged", target=link.target_id, old=list(link.addresses),
                                  new=list(addresses))
                link.addresses = addresses
                await self._configure(link)

    def close(self) -> None:
        """Unpin every namespace (shutdown; the links themselves stay for the next run)."""
        for link in self.links.values():
            if link.pinned is not None:
                link.pinned.close()
                link.pinned = None


def _alias(link: TargetLink) -> names.TargetPortAlias:
    return names.TargetPortAlias(link.target_id, link.inode, link.owner.pid, link.owner.start_time)


def _far_index(ports: list[dataplane.Port], name: str) -> int:
    for p in ports:
        if p.name == name and p.peer_index is not None:
            return p.peer_index
    return -1


def _is_host(address: str) -> bool:
    iface = ipaddress.ip_interface(address)
    return iface.network.prefixlen == iface.max_prefixlen


def _prefix_key(prefix: str) -> tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    net = ipaddress.ip_network(prefix)
    return (net.version, net)
