"""The target registry's owner: registry core + sqlite store + watchers + the keepalive timer.

All mutations go through :meth:`Targets.register`, :meth:`Targets.unregister` and
:meth:`Targets.expire_due`, synchronous methods called on the event loop, so no two mutations
interleave (one owner). Each plans a :class:`~meridio.nsp.registry.Change`, writes it to sqlite, then
applies it and publishes the new list to the watchers (each watcher gets its filtered list only if it
changed). :meth:`Targets.run_expiry` is the long-lived task that expires entries on time.
"""
from __future__ import annotations

import asyncio
import enum

from meridio.api import model
from meridio.common import log as logmod
from meridio.nsp import filters, registry, store, watchers
from meridio.nsp.registry import Change

__all__ = ["Operation", "Targets", "select"]


class Operation(enum.Enum):
    """What happened to one registry entry (counted for ``meridio_nsp_registry_operations_total``)."""

    REGISTER = "register"
    """A new target (stored DISABLED)."""
    UPDATE = "update"
    """A known target changed its status or context."""
    REFRESH = "refresh"
    """A known target re-registered unchanged (keepalive)."""
    UNREGISTER = "unregister"
    EXPIRED = "expired"
    """Removed: not refreshed within the entry timeout."""


def select(targets: tuple[model.Target, ...], flt: model.Target | None) -> tuple[model.Target, ...]:
    """What a ``Watch(flt)`` watcher sees: the targets matching ``flt`` (Meridio's ``TargetFilter``)."""
    return tuple(t for t in targets if filters.target_matches(flt, t))


class Targets:
    def __init__(self, reg: registry.Registry, db: store.TargetStore | None, *,
                 log: logmod.Logger = logmod.null) -> None:
        self._reg = reg
        self._db = db
        self._log = log
        self._hub: watchers.Hub[tuple[model.Target, ...]] = watchers.Hub(reg.targets())
        self._wake = asyncio.Event()
        self.operations: dict[Operation, int] = dict.fromkeys(Operation, 0)
        """Entries changed since start, by operation (counted once the change is stored)."""
        self._owners: dict[str, str] = {k: v for k, v in (db.owners() if db else {}).items() if k in reg}
        """Target ID → identity URI of the component that registered it (:mod:`meridio.nsp.authz`)."""

    @property
    def registry(self) -> registry.Registry:
        return self._reg

    def targets(self) -> tuple[model.Target, ...]:
        return self._reg.targets()

    @property
    def watcher_count(self) -> int:
        return len(self._hub)

    def owner_of(self, target: model.Target) -> str | None:
        """The identity that registered ``target``, ``None`` if unknown or registered without one."""
        return self._owners.get(registry.target_id(registry.normalize(target)))

    def register(self, target: model.Target, *, owner: str | None = None) -> None:
        """Add or update ``target`` (raises ``InvalidTarget`` / ``RegistryStoreError``; nothing changes then).

        ``owner``: the caller's identity URI, stored with a target that has none yet."""
        change = self._reg.plan_register(target)
        tid = change.refresh[0]
        new = tid not in self._reg
        claim = {tid: owner} if owner is not None and tid not in self._owners else {}
        self._commit(change, claim)
        if new:
            self._count(Operation.REGISTER)
            self._log.info("targetRegistered", target=change.refresh[0])
            self._wake.set()
        elif change.put:
            self._count(Operation.UPDATE)
            self._log.info("targetUpdated", target=change.refresh[0], status=change.put[0][1].status.name)
        else:
            self._count(Operation.REFRESH)
            self._log.debug("targetRefreshed", target=change.refresh[0])

    def unregister(self, target: model.Target) -> None:
        change = self._reg.plan_unregister(target)
        self._commit(change)
        self._count(Operation.UNREGISTER, len(change.delete))
        for tid in change.delete:
            self._log.info("targetUnregistered", target=tid)

    def expire_due(self) -> tuple[str, ...]:
        """Remove every entry whose keepalive deadline has passed; returns their IDs."""
        change = self._reg.plan_expiry()
        if change.delete:
            self._commit(change)
            self._count(Operation.EXPIRED, len(change.delete))
            for tid in change.delete:
                self._log.info("targetRemoved", target=tid, reason="keepaliveExpired")
        return change.delete

    def _count(self, op: Operation, n: int = 1) -> None:
        self.operations[op] += n

    def _commit(self, change: Change, owners: dict[str, str] | None = None) -> None:
        if self._db is not None:
            try:
                self._db.apply(change, owners)
            except store.RegistryStoreError as exc:
                self._log.error("registryWriteFailed", error=str(exc))
                raise
        self._reg.apply(change)
        self._owners.update(owners or {})
        for tid in change.delete:
            self._owners.pop(tid, None)
        if change.modifies_targets:
            self._hub.publish(self._reg.targets())

    def subscribe(self, flt: model.Target | None) -> watchers.Mailbox[tuple[model.Target, ...]]:
        return self._hub.subscribe(lambda targets: select(targets, flt), key=("target", flt))

    def unsubscribe(self, box: watchers.Mailbox[tuple[model.Target, ...]]) -> None:
        self._hub.unsubscribe(box)

    async def run_expiry(self) -> None:
        """Expire entries on time, forever (sleeps on the event loop's clock until the next deadline)."""
        while True:
            deadline = self._reg.next_deadline()
            if deadline is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = deadline - self._reg.now()
            if delay > 0:
                # Entries only ever get later deadlines (all share one timeout), so sleeping until
                # the earliest one known now cannot miss an expiry.
                await asyncio.sleep(delay)
            try:
                self.expire_due()
            except store.RegistryStoreError:
                await asyncio.sleep(1.0)  # logged by _commit; retried, nothing was changed

    def close_watchers(self) -> None:
        """End every watch stream (shutdown)."""
        self._hub.close()

    def close(self) -> None:
        """End every watch stream and close the database."""
        self._hub.close()
        if self._db is not None:
            self._db.close()
            self._db = None
