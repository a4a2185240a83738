"""Per-watcher delivery of full filtered lists, deduplicated (what Meridio left as a ``todo``).

Every NSP watch (configuration or targets) has the same shape: on subscribe the watcher gets its
current filtered view of the state; on every state change it gets the view again, but only if *its*
view changed. Each view is a complete list, so a slow watcher only ever needs the newest one: a
:class:`Mailbox` holds at most one pending value (newer values replace it; a value equal to the last
one delivered cancels it). Memory per watcher is bounded and a stuck client cannot slow the others.

:class:`Hub` owns the mailboxes of one kind of state ``S`` and computes each watcher's view with the
watcher's own ``select(S)`` function. Everything is synchronous except :meth:`Mailbox.get`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Mailbox", "Hub", "Closed"]

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
        self._watchers: dict[Mailbox[object], Callable[[S], object]] = {}

    @property
    def state(self) -> S:
        return self._state

    def __len__(self) -> int:
        return len(self._watchers)

    def subscribe(self, select: Callable[[S], V]) -> Mailbox[V]:
        """A new watcher; its current view is pending immediately (even if empty)."""
        box: Mailbox[V] = Mailbox()
        box.offer(select(self._state))
        self._watchers[box] = select  # type: ignore[index]
        return box

    def unsubscribe(self, box: Mailbox[V]) -> None:
        self._watchers.pop(box, None)  # type: ignore[arg-type]
        box.close()

    def publish(self, state: S) -> int:
        """Set the new state; returns how many watchers got a new view."""
        self._state = state
        return sum(1 for box, select in self._watchers.items() if box.offer(select(state)))

    def close(self) -> None:
        """Close every mailbox (their streams end)."""
        for box in list(self._watchers):
            box.close()
        self._watchers.clear()
