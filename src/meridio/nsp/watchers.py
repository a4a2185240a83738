"""Per-watcher delivery of full filtered lists, deduplicated (what Meridio left as a ``todo``).

Every NSP watch (configuration or targets) has the same shape: on subscribe the watcher gets its
current filtered view of the state; on every state change it gets the view again, but only if *its*
view changed. Each view is a complete list, so a slow watcher only ever needs the newest one: a
:class:`Mailbox` holds at most one pending value (newer values replace it; a value equal to the last
one delivered cancels it). Memory per watcher is bounded and a stuck client cannot slow the others.

:class:`Hub` owns the mailboxes of one kind of state ``S`` and computes each watcher's view with the
watcher's own ``select(S)`` function, once per distinct filter ``key``: watchers with equal filters
share one view object (so the servicer encodes it once, not once per watcher). Everything is
synchronous except :meth:`Mailbox.get`.

:class:`Quota` bounds the watch streams of one server: in total and per peer (``context.peer()``: over
TCP one client connection). Over a unix socket every client has the same peer string, so there only
the total applies (a per-peer limit would be a second, smaller total for every local client).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from meridio.common import grpcutil

__all__ = ["Mailbox", "Hub", "Closed", "Quota", "QuotaExceeded", "MAX_WATCHERS", "MAX_WATCHERS_PER_PEER"]

S = TypeVar("S")
V = TypeVar("V")


class Closed(Exception):
    """The mailbox was closed (the watcher unsubscribed or the server is shutting down)."""


class _Nothing:
    def __repr__(self) -> str:
        return "<nothing>"


_NOTHING = _Nothing()


class Mailbox(Generic[V]):
    """Holds the newest value not yet delivered to one watcher."""

    def __init__(self) -> None:
        self._pending: V | _Nothing = _NOTHING
        self._delivered: V | _Nothing = _NOTHING
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, value: V) -> bool:
        """Queue ``value`` unless it equals what was last delivered; True if something is now pending."""
        if not isinstance(self._delivered, _Nothing) and value == self._delivered:
            self._pending = _NOTHING
            self._ready.clear()
            return False
        self._pending = value
        self._ready.set()
        return True

    def take(self) -> V | None:
        """The pending value (marked delivered), or ``None`` if nothing is pending."""
        if isinstance(self._pending, _Nothing):
            return None
        value = self._pending
        self._delivered, self._pending = value, _NOTHING
        self._ready.clear()
        return value

    @property
    def pending(self) -> bool:
        return not isinstance(self._pending, _Nothing)

    async def get(self) -> V:
        """Wait for the next value; raises :class:`Closed` once closed (a pending value is dropped)."""
        while True:
            if self.closed:
                raise Closed()
            if self.pending:
                value = self._pending
                self.take()
                return value  # type: ignore[return-value]
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class Hub(Generic[S]):
    """The watchers of one state; :meth:`publish` offers each its own selection of the new state."""

    def __init__(self, state: S) -> None:
        self._state = state
        self._watchers: dict[Mailbox[object], tuple[object, Callable[[S], object]]] = {}
        self._views: dict[object, object] = {}
        """The current view per filter key that has watchers (shared by every watcher of that key)."""
        self._refs: dict[object, int] = {}

    @property
    def state(self) -> S:
        return self._state

    def __len__(self) -> int:
        return len(self._watchers)

    def subscribe(self, select: Callable[[S], V], key: object | None = None) -> Mailbox[V]:
        """A new watcher; its current view is pending immediately (even if empty).

        ``key`` (hashable) identifies the filter behind ``select``: watchers with equal keys must have
        equal selections; they share the computed view. ``None``: a private one.
        """
        box: Mailbox[V] = Mailbox()
        key = key if key is not None else box
        if key not in self._views:
            self._views[key] = select(self._state)
        self._refs[key] = self._refs.get(key, 0) + 1
        box.offer(self._views[key])  # type: ignore[arg-type]
        self._watchers[box] = (key, select)  # type: ignore[index]
        return box

    def unsubscribe(self, box: Mailbox[V]) -> None:
        entry = self._watchers.pop(box, None)  # type: ignore[arg-type]
        box.close()
        if entry is not None:
            key = entry[0]
            self._refs[key] -= 1
            if not self._refs[key]:
                del self._refs[key], self._views[key]

    def publish(self, state: S) -> int:
        """Set the new state; returns how many watchers got a new view."""
        self._state = state
        self._views = {}
        offered = 0
        for box, (key, select) in self._watchers.items():
            if key not in self._views:
                self._views[key] = select(state)
            offered += box.offer(self._views[key])
        return offered

    def close(self) -> None:
        """Close every mailbox (their streams end)."""
        for box in list(self._watchers):
            box.close()
        self._watchers.clear()
        self._views.clear()
        self._refs.clear()


MAX_WATCHERS = 4096
"""Watch streams one NSP serves at once (``NSP_MAX_WATCHERS``)."""
MAX_WATCHERS_PER_PEER = 512
"""Watch streams one peer may hold (``NSP_MAX_WATCHERS_PER_PEER``); not applied over unix sockets."""


class QuotaExceeded(grpcutil.ResourceExhausted):
    """No more watch streams for this peer or this server (``RESOURCE_EXHAUSTED``)."""


class Quota:
    """Counts open watch streams per peer and in total; :meth:`acquire` refuses beyond the limits."""

    def __init__(self, total: int = MAX_WATCHERS, per_peer: int = MAX_WATCHERS_PER_PEER) -> None:
        self.total = total
        self.per_peer = per_peer
        self._by_peer: dict[str, int] = {}
        self._open = 0

    def __len__(self) -> int:
        return self._open

    def acquire(self, peer: str) -> None:
        """Count one more stream of ``peer``, or raise :class:`QuotaExceeded` (nothing counted)."""
        if self._open >= self.total:
            raise QuotaExceeded(f"watch: this server already serves {self.total} watch streams (the limit); "
                                "close some first")
        if not peer.startswith("unix:") and self._by_peer.get(peer, 0) >= self.per_peer:
            raise QuotaExceeded(f"watch: this peer already holds {self.per_peer} watch streams (the limit); "
                                "close some first")
        self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
        self._open += 1

    def release(self, peer: str) -> None:
        n = self._by_peer.get(peer, 0) - 1
        if n < 0:
            return
        self._open -= 1
        if n:
            self._by_peer[peer] = n
        else:
            del self._by_peer[peer]
