"""Error classes and one backoff policy for everything that retries."""
from __future__ import annotations

import dataclasses

__all__ = ["PermanentError", "TemporaryError", "Backoff"]


class PermanentError(Exception):
    """Retrying will not help (bad input, bad configuration)."""


class TemporaryError(Exception):
    """Retrying later may help (a peer is down, a dependency is not there yet)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


@dataclasses.dataclass
class Backoff:
    """Exponential backoff: ``initial`` seconds doubling up to ``cap``; :meth:`reset` after a success."""

    initial: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    _next: float = dataclasses.field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial
