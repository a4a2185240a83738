"""The proxy's state owner: bridge0, LB links, target links and egress, behind one lock.

Every input — NSP lists (LB replicas, trench VIPs, the conduit's flows), link-service calls, the
periodic check and the periodic IPAM renewal — goes through one method of :class:`Forwarder`, which
holds the lock for the whole change, so the kernel sees one writer and no half-applied state.

Restart without disruption: :meth:`start` never flushes anything. It keeps bridge0 (and its MAC and
addresses), adopts the links it finds by their aliases, and leaves table 1 and its rules alone until
NSP has sent the replicas and the VIPs; from then on every change is a difference against what is
there (reference §3.8 flushes table 1 rules at the first VIP update instead; we reconcile).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping

from meridio.api import model
from meridio.api.link import Link
from meridio.common.retry import PermanentError, TemporaryError
from meridio.kernel import pins
from meridio.proxy import addressing, dataplane, plan
from meridio.proxy.context import Context
from meridio.proxy.lblinks import LbLinks
from meridio.proxy.targets import TargetLinks

__all__ = ["Forwarder"]


class Forwarder:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._lock = asyncio.Lock()
        self.bridge_addresses: tuple[str, ...] = ()
        self.lb = LbLinks(ctx)
        self.targets = TargetLinks(ctx, bridge=lambda: self.bridge_addresses)
        self._vips: list[model.Vip] | None = None
        self._bridge_allocated = False
        self._bridge_error = ""
        """Whether IPAM confirmed the bridge addresses in this run (observed ones are used meanwhile)."""
        self.started = False

    @property
    def ready(self) -> bool:
        """Egress is possible: at least one LB link (Meridio's ``Egress`` readiness)."""
        return bool(self.lb.links)

    async def start(self) -> None:
        """Set up bridge0 and sysctls, adopt what a previous run left, try to get the bridge addresses."""
        async with self._lock:
            await self._ctx.dp.setup()
            self.bridge_addresses = await self._ctx.dp.bridge_addresses()
            ports = await self._ctx.dp.ports()
            await self.lb.recover(ports)
            await self.targets.recover(ports)
            await self._allocate_bridge()
            self.started = True
            self._log.info("proxyStarted", bridge=list(self.bridge_addresses),
                           targets=sorted(self.targets.links))

    async def _allocate_bridge(self) -> bool:
        try:
            addresses = await self._ctx.ipam.allocate(addressing.BRIDGE_CHILD)
        except (TemporaryError, PermanentError) as exc:
            (self._log.debug if self._bridge_error == str(exc) else self._log.warning)(
                "bridgeAddressesPending", error=str(exc))
            self._bridge_error = str(exc)
            return False
        self._bridge_error = ""
        if tuple(sorted(addresses, key=plan.address_key)) != tuple(sorted(self.bridge_addresses, key=plan.address_key)):
            await self._ctx.dp.set_bridge_addresses(addresses)
            self._log.info("bridgeAddressesSet", addresses=list(addresses), previous=list(self.bridge_addresses))
            self.bridge_addresses = tuple(addresses)
            await self.targets.reconfigure_all()
        elif not self.bridge_addresses:
            self.bridge_addresses = tuple(addresses)
        self._bridge_allocated = True
        return True

    # --- NSP inputs -----------------------------------------------------------------------------

    async def set_lb_targets(self, targets: Iterable[model.Target]) -> None:
        cfg = self._ctx.config
        peers, problems = plan.lb_peers(targets, trench=cfg.trench, conduit=cfg.conduit)
        for p in problems:
            self._log.warning("lbAnnouncementIgnored", lb=p.identifier, error=p.error)
        await self.set_lb_peers(peers)

    async def set_lb_peers(self, peers: Mapping[str, plan.LbPeer]) -> None:
        async with self._lock:
            await self.lb.set_peers(peers)
            await self._egress()

    async def set_vips(self, vips: Iterable[model.Vip]) -> None:
        async with self._lock:
            self._vips = list(vips)
            await self._egress()

    async def set_flows(self, flows: Iterable[model.Flow]) -> None:
        async with self._lock:
            await self.targets.set_conduit_vips(plan.conduit_vips(flows))

    async def _egress(self) -> None:
        e = plan.egress(self._vips or (), self.lb.addresses(), self._ctx.config.families)
        await self._ctx.dp.set_egress(e, rules=self._vips is not None, routes=self.lb.known)

    # --- link service ---------------------------------------------------------------------------

    async def connect(self, target_id: str, interface_name: str, pinned: pins.PinnedNs) -> Link:
        """Link ``pinned``; the work runs to its end even if the call is cancelled meanwhile.

        Why: the kernel calls run on the kernel thread, which a cancelled coroutine does not stop. A
        Connect cancelled halfway (the server's 10 s cap on a unary call, the client's deadline: 100
        targets connecting at once to one busy proxy) left its veth behind unrecorded, and every retry
        was refused with "interface_name: nsm-0 already exists" for good. Finished instead, the link is
        recorded, and the retry takes it over (``TargetLinks._reuse``).
        """
        work = asyncio.ensure_future(self._connect(target_id, interface_name, pinned))
        work.add_done_callback(_retrieve)
        return await asyncio.shield(work)

    async def _connect(self, target_id: str, interface_name: str, pinned: pins.PinnedNs) -> Link:
        async with self._lock:
            return await self.targets.connect(target_id, interface_name, pinned)

    async def disconnect(self, target_id: str, pinned: pins.PinnedNs) -> bool:
        async with self._lock:
            return await self.targets.disconnect(target_id, pinned)

    def watch(self, target_id: str) -> AsyncIterator[Link]:
        return self.targets.watch(target_id)

    # --- periodic work --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Reclaim/repair links, retry what failed, release addresses whose delay is over."""
        async with self._lock:
            if not self._bridge_allocated:
                await self._allocate_bridge()
            present = {p.name for p in await self._ctx.dp.ports()}
            if await self.lb.reconcile(present):
                await self._egress()
            await self.targets.check(present)
            due = self._ctx.releases.pop_due(self._ctx.monotonic())
        for child in due:
            await self._release(child)

    async def _release(self, child: str) -> None:
        try:
            await self._ctx.ipam.release(child)
            self._log.info("addressesReleased", child=child)
        except TemporaryError as exc:
            self._log.warning("releaseFailed", child=child, error=str(exc))
            async with self._lock:
                if not self._owned(child):
                    self._ctx.releases.start(child, self._ctx.monotonic())

    def _owned(self, child: str) -> bool:
        return (any(addressing.target_child(t) == child for t in self.targets.links)
                or any(addressing.lb_child(i) == child for i in self.lb.links))

    async def renew(self) -> None:
        """Refresh every address at IPAM (survive its garbage collector) and follow any change."""
        async with self._lock:
            await self._allocate_bridge()
            try:
                if await self.lb.renew():
                    await self._egress()
                await self.targets.renew()
            except (TemporaryError, dataplane.KernelError) as exc:
                self._log.warning("renewFailed", error=str(exc))

    async def egress_state(self) -> tuple[frozenset[str], dict[int, tuple[str, ...] | None]]:
        return await self._ctx.dp.egress_state()

    def close(self) -> None:
        self.targets.close()


def _retrieve(task: asyncio.Future[Link]) -> None:
    """A Connect whose caller was cancelled: its outcome is not wanted (and must not be logged as lost)."""
    if not task.cancelled():
        task.exception()
