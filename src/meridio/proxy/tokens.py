"""One-time credentials of the link service (pure; the caller passes the time and the random source).

The credential socket pins the caller's network namespace and hands back a token; Connect or
Disconnect must present it once, within ``ttl`` seconds. Expired entries are handed back so the owner
can close what they hold (namespace and pidfd file descriptors).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TokenStore", "random_token"]

V = TypeVar("V")


def random_token() -> str:
    """192 bits from the OS random source, URL-safe text."""
    return secrets.token_urlsafe(24)


class TokenStore(Generic[V]):
    def __init__(self, ttl: float, new_token: Callable[[], str] = random_token, limit: int = 1024) -> None:
        self.ttl = ttl
        self.limit = limit
        self._new_token = new_token
        self._items: dict[str, tuple[float, V]] = {}

    def issue(self, value: V, now: float) -> str:
        """Store ``value`` under a fresh token; refuse when ``limit`` tokens are outstanding."""
        if len(self._items) >= self.limit:
            raise OverflowError(f"too many outstanding credentials (limit {self.limit})")
        token = self._new_token()
        while token in self._items:
            token = self._new_token()
        self._items[token] = (now + self.ttl, value)
        return token

    def take(self, token: str, now: float) -> V | None:
        """The value of a valid token, removing it; ``None`` if unknown or expired (expired stays for
        :meth:`expire` to hand back)."""
        item = self._items.get(token)
        if item is None or item[0] < now:
            return None
        del self._items[token]
        return item[1]

    def expire(self, now: float) -> list[V]:
        """Remove and return the values of expired tokens."""
        gone = [t for t, (at, _) in self._items.items() if at < now]
        return [self._items.pop(t)[1] for t in gone]

    def drain(self) -> list[V]:
        """Remove and return everything (shutdown)."""
        values = [v for _, v in self._items.values()]
        self._items.clear()
        return values

    def __len__(self) -> int:
        return len(self._items)
