"""The one owner of the IPAM state: the prefix tree in memory and its sqlite store.

Every operation plans its changes with the pure planners of :mod:`meridio.ipam.tree`, stores them in
one transaction, and only then applies them to memory, without awaiting in between: so concurrent
RPCs never see half an operation, and a failed write changes nothing. Callers: the gRPC servicer
(Allocate/Release), the NSP conduit watcher (:meth:`Registry.set_conduits`) and the garbage collector.
"""
from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Collection, Iterable

from meridio.common import bounds
from meridio.common import log as logmod
from meridio.common.clock import Clock, SystemClock
from meridio.common.grpcutil import FailedPrecondition
from meridio.common.retry import PermanentError
from meridio.ipam import tree
from meridio.ipam.store import IpamStoreError, Store

__all__ = ["NODE_REFRESH_S", "AllocationResult", "ChildRequest", "Registry", "RequestError", "UnknownNode",
           "collect_garbage_forever", "release_departed_forever"]

NODE_REFRESH_S = 60.0
"""A node's ``updated_at`` is refreshed at most once a minute (Meridio damps it the same way)."""


class RequestError(PermanentError, ValueError):
    """The request cannot be served by this IPAM (bad input): ``INVALID_ARGUMENT``."""


class UnknownNode(FailedPrecondition):
    """The request's node is not one of ``IPAM_NODES`` (it may be added): ``FAILED_PRECONDITION``."""


class AllocationResult(enum.Enum):
    """How an Allocate ended (counted for ``meridio_ipam_allocations_total``)."""

    ALLOCATED = "allocated"
    REFUSED = "refused"
    """Bad request, no free prefix, or the conduit still unknown at the deadline."""
    FAILED = "failed"
    """The allocation could not be stored."""


@dataclasses.dataclass(frozen=True)
class ChildRequest:
    """An ``ipam.v1.Child`` parsed at the edge: non-empty names, family kept raw (checked here)."""

    name: str
    trench: str
    conduit: str
    node: str
    family: int
    """The ``ipam.v1.IPFamily`` number (0 = IPV4, 1 = IPV6); other values are refused."""


class Registry:
    """Allocations of one trench, for the families of ``layouts``."""

    def __init__(self, store: Store, *, trench: str, layouts: Iterable[tree.Layout], clock: Clock | None = None,
                 log: logmod.Logger = logmod.null, node_refresh: float = NODE_REFRESH_S,
                 nodes: Collection[str] = (), release_grace: float = 0.0) -> None:
        self._store = store
        self.nodes = frozenset(nodes)
        """The nodes that may get prefixes (``IPAM_NODES``); empty: any node."""
        self._release_grace = release_grace
        """Seconds a conduit the NSP stopped listing keeps its prefix (0: released at once)."""
        self._listed: set[str] = set()
        self._departed: dict[str, float] = {}
        """Conduits with a prefix that the NSP no longer lists, and since when (clock time)."""
        self._clock = clock or SystemClock()
        self._log = log.bind(trench=trench)
        self._node_refresh = node_refresh
        self.trench = trench
        self.layouts = {layout.family: layout for layout in layouts}
        self._tree = tree.Tree(store.load())
        self._unplaced: dict[tree.Family, set[str]] = {family: set() for family in self.layouts}
        self._conduits_changed = asyncio.Event()
        self.allocations: dict[AllocationResult, int] = dict.fromkeys(AllocationResult, 0)
        """Allocate calls since start, by result."""
        changes: list[tree.Change] = []
        for layout in self.layouts.values():
            changes += tree.plan_trench(self._tree, layout, trench, self._clock.time())
        self._commit(changes)

    def close(self) -> None:
        """Close the store (the registry is unusable afterwards)."""
        self._store.close()

    def entries(self) -> list[tree.Entry]:
        """A snapshot of every entry (all families, all trenches in the store)."""
        return list(self._tree)

    def conduits(self, family: tree.Family) -> dict[str, tree.Entry]:
        """The conduit prefixes of this trench in ``family``, by conduit name."""
        root = tree.trench_path(self.trench, family)
        return {e.path[-1]: e for e in self._tree.children(root)}

    def unplaced(self, family: tree.Family) -> frozenset[str]:
        """Conduits of the NSP that found no room for a prefix in ``family``'s trench prefix."""
        return frozenset(self._unplaced.get(family, ()))

    async def allocate(self, request: ChildRequest, timeout: float | None = None) -> tree.Allocation:
        """Allocate (idempotently) ``request``; wait up to ``timeout`` seconds (None: no limit) for the
        conduit prefix to appear. Raises :class:`RequestError`, :class:`tree.NoMorePrefix`,
        :class:`tree.ConduitNotFound` (still unknown at the timeout) or ``IpamStoreError``."""
        try:
            allocation = await self._allocate(request, timeout)
        except (RequestError, UnknownNode, tree.NoMorePrefix, tree.ConduitNotFound):
            self.allocations[AllocationResult.REFUSED] += 1
            raise
        except IpamStoreError:
            self.allocations[AllocationResult.FAILED] += 1
            raise
        self.allocations[AllocationResult.ALLOCATED] += 1
        return allocation

    async def _allocate(self, request: ChildRequest, timeout: float | None) -> tree.Allocation:
        layout, path = self._resolve(request)
        if self.nodes and request.node not in self.nodes:
            # Under mTLS the node would come from the caller's certificate, not from the request.
            raise UnknownNode(f"child.subnet.node: node {bounds.quote(request.node)} is not one of the nodes of "
                              f"this IPAM (IPAM_NODES)")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if request.conduit in self._unplaced[layout.family]:
                raise tree.NoMorePrefix(f"no more prefix available: conduit {bounds.quote(request.conduit)} got no "
                                        f"/{layout.conduit_length} in trench prefix {layout.prefix}")
            try:
                allocation, changes = tree.plan_allocate(self._tree, layout, path, self._clock.time(),
                                                         node_refresh=self._node_refresh)
            except tree.ConduitNotFound:
                await self._wait_for_conduits(request.conduit,
                                              None if deadline is None else deadline - loop.time())
                continue
            self._commit(changes)
            self._log.debug("prefixAllocated", conduit=request.conduit, node=request.node, child=request.name,
                            family=layout.family.name, prefix=str(allocation))
            return allocation

    def release(self, request: ChildRequest) -> None:
        """Release the child of ``request``; unknown conduit, node or child is not an error."""
        layout, path = self._resolve(request)
        changes = tree.plan_release(self._tree, path, self._clock.time(), node_refresh=self._node_refresh)
        self._commit(changes)
        if any(isinstance(c, tree.Delete) for c in changes):
            self._log.debug("prefixReleased", conduit=request.conduit, node=request.node, child=request.name,
                            family=layout.family.name)

    def set_conduits(self, names: Collection[str]) -> None:
        """Follow the NSP's current list: new conduits get a prefix at once; a conduit no longer listed
        keeps its prefix and everything in it for the release grace (a configuration that vanished for
        a moment, an NSP restarting on a bad file), and is released after it (:meth:`release_departed`)."""
        now = self._clock.time()
        self._listed = set(names)
        with_prefix = {name for family in self.layouts for name in self.conduits(family)}
        for name in with_prefix - self._listed:
            if name not in self._departed:
                self._departed[name] = now
                self._log.warning("conduitUnlisted", conduit=name, reason="releaseAfterGrace",
                                  graceSeconds=self._release_grace)
        for name in self._listed & set(self._departed):
            del self._departed[name]
            self._log.info("conduitListedAgain", conduit=name, reason="prefixKept")
        self._plan_conduits(now)

    def release_departed(self) -> None:
        """Release the conduits unlisted for longer than the grace (called periodically by the app)."""
        now = self._clock.time()
        if any(now - since >= self._release_grace for since in self._departed.values()):
            self._plan_conduits(now)

    def next_release_in(self) -> float | None:
        """Seconds until the next unlisted conduit is due for release (None: none is waiting)."""
        if not self._departed:
            return None
        return max(0.0, min(self._departed.values()) + self._release_grace - self._clock.time())

    def _plan_conduits(self, now: float) -> None:
        kept = {name for name, since in self._departed.items() if now - since < self._release_grace}
        names = self._listed | kept
        for name in set(self._departed) - kept:
            del self._departed[name]
        changes: list[tree.Change] = []
        for family, layout in self.layouts.items():
            before = set(self.conduits(family))
            planned, unplaced = tree.plan_conduits(self._tree, layout, self.trench, names, now)
            changes += planned
            self._unplaced[family] = set(unplaced)
            self._log_conduit_changes(family, before, planned, unplaced)
        self._commit(changes)
        self._conduits_changed.set()
        self._conduits_changed = asyncio.Event()

    def collect_garbage(self, threshold: float) -> int:
        """Remove node and child prefixes idle for more than ``threshold`` seconds; return how many."""
        changes = tree.plan_collect(self._tree, self._clock.time(), threshold)
        self._commit(changes)
        for change in changes:
            self._log.info("prefixCollected", path="/".join(change.path))  # type: ignore[union-attr]
        return len(changes)

    def _resolve(self, request: ChildRequest) -> tuple[tree.Layout, tree.Path]:
        try:
            family = tree.Family(request.family)
            layout = self.layouts[family]
        except (ValueError, KeyError):
            served = ", ".join(f.name for f in self.layouts)
            raise RequestError(f"cannot allocate in this ip family: subnet.ipFamily {request.family} is not "
                               f"served by this IPAM (serves {served})") from None
        if request.trench != self.trench:
            raise RequestError(f"no corresponding trench: subnet.conduit.trench.name {bounds.quote(request.trench)} is not "
                               f"the trench of this IPAM ({self.trench!r})")
        path = tree.trench_path(self.trench, family) + (request.conduit, request.node, request.name)
        return layout, path

    async def _wait_for_conduits(self, conduit: str, timeout: float | None) -> None:
        missing = tree.ConduitNotFound(f"conduit {bounds.quote(conduit)} has no prefix yet (not announced by the NSP)")
        if timeout is not None and timeout <= 0:
            raise missing
        try:
            async with asyncio.timeout(timeout):
                await self._conduits_changed.wait()
        except TimeoutError:
            raise missing from None

    def _commit(self, changes: list[tree.Change]) -> None:
        # Store first: if the write fails, memory is untouched and the caller gets the error.
        self._store.apply(changes)
        self._tree.apply(changes)

    def _log_conduit_changes(self, family: tree.Family, before: set[str], planned: list[tree.Change],
                             unplaced: list[str]) -> None:
        for change in planned:
            if isinstance(change, tree.Put):
                self._log.info("conduitPrefixCreated", conduit=change.entry.path[-1], family=family.name,
                               prefix=str(change.entry.network))
            elif len(change.path) == tree.Level.CONDUIT and change.path[-1] in before:
                self._log.info("conduitPrefixRemoved", conduit=change.path[-1], family=family.name)
        for name in unplaced:
            self._log.error("conduitPrefixUnavailable", conduit=name, family=family.name,
                            reason="noMorePrefixAvailable")


async def collect_garbage_forever(registry: Registry, *, interval: float, threshold: float,
                                  log: logmod.Logger = logmod.null) -> None:
    """Run :meth:`Registry.collect_garbage` every ``interval`` seconds (until cancelled).

    A failed collection (the registry cannot be written) is logged and tried again next time.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            removed = registry.collect_garbage(threshold)
        except IpamStoreError as exc:
            log.error("garbageCollectionFailed", reason="storeError", error=str(exc))
            continue
        log.debug("garbageCollected", removed=removed)


async def release_departed_forever(registry: Registry, *, log: logmod.Logger = logmod.null,
                                   check_every: float = 1.0) -> None:
    """Release conduits unlisted for longer than the grace, checking at most ``check_every`` seconds apart."""
    while True:
        delay = registry.next_release_in()
        await asyncio.sleep(check_every if delay is None else min(max(delay, 0.01), check_every))
        try:
            registry.release_departed()
        except IpamStoreError as exc:
            log.error("conduitReleaseFailed", reason="storeError", error=str(exc))
