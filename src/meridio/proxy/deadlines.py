"""Keyed deadlines (pure; the caller passes the time): delayed address release and orphaned links.

Meridio's proxy releases a target's IPAM addresses ``NSM_IP_RELEASE_DELAY`` (20 s) after the target
disconnects and cancels the release if the target connects again (reference §3.8). The same structure
tracks links whose owner process died: they are reclaimed after a grace period unless re-adopted.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """At most one deadline per key; :meth:`pop_due` hands out the keys whose time has come."""

    def __init__(self, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay: must be >= 0 seconds (got {delay})")
        self.delay = delay
        self._at: dict[K, float] = {}

    def start(self, key: K, now: float) -> float:
        """Start (or restart) the delay for ``key``; returns the deadline."""
        self._at[key] = now + self.delay
        return self._at[key]

    def cancel(self, key: K) -> bool:
        """Forget ``key``; ``True`` if it was pending."""
        return self._at.pop(key, None) is not None

    def pending(self, key: K) -> bool:
        return key in self._at

    def pop_due(self, now: float) -> list[K]:
        """Remove and return the keys whose deadline is ``<= now``, earliest first."""
        due = sorted((at, k) for k, at in self._at.items() if at <= now) if self._at else []
        for _, k in due:
            del self._at[k]
        return [k for _, k in due]

    def next_deadline(self) -> float | None:
        return min(self._at.values()) if self._at else None

    def keys(self) -> frozenset[K]:
        return frozenset(self._at)

    def __len__(self) -> int:
        return len(self._at)
