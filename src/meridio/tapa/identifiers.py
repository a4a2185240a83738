"""Target identifiers of a stream: which are in use, and which one to take (reference §1.2, §3.4).

A target of a stream needs an identifier in ``1..max_targets`` no other target of the stream has: the LB
turns it into the fwmark and routing table of the target. The TAPA reads the stream's targets from the
NSP (any status), leaves out its own entries (those carrying one of its own addresses), and picks a free
identifier at random — preferring the one it had, so a refresh after an NSP outage does not move the
target in the Maglev table.
"""
from __future__ import annotations

import random
from collections.abc import Collection, Iterable

from meridio.api import model
from meridio.common.retry import TemporaryError

__all__ = ["DEFAULT_MAX_TARGETS", "NoIdentifierAvailable", "effective_max_targets", "in_use", "choose",
           "own_entries"]

DEFAULT_MAX_TARGETS = 100
"""What a stream without max-targets gets (Meridio forces 0 to 100 for old NSPs)."""


class NoIdentifierAvailable(TemporaryError):
    """Every identifier of the stream is taken; retrying later may find one free."""

    def __init__(self) -> None:
        super().__init__("no identifier available to register the target")


def effective_max_targets(max_targets: int) -> int:
    return max_targets if max_targets > 0 else DEFAULT_MAX_TARGETS


def _is_own(target: model.Target, own_ips: Collection[str]) -> bool:
    return any(ip in own_ips for ip in target.ips)


def own_entries(targets: Iterable[model.Target], own_ips: Collection[str]) -> list[model.Target]:
    """The entries of ``targets`` that are ours (they carry one of our addresses)."""
    return [t for t in targets if _is_own(t, own_ips)]


def in_use(targets: Iterable[model.Target], own_ips: Collection[str]) -> frozenset[int]:
    """Identifiers held by targets other than us (entries without a numeric identifier are ignored)."""
    used: set[int] = set()
    for target in targets:
        if target.type is not model.TargetType.DEFAULT or _is_own(target, own_ips):
            continue
        identifier = target.identifier
        if identifier is not None and identifier.strip().isdigit():
            used.add(int(identifier))
    return frozenset(used)


def choose(max_targets: int, used: Collection[int], rng: random.Random, *, prefer: int | None = None) -> int:
    """A free identifier in ``1..max_targets``: ``prefer`` if free, else a random free one.

    Raises :class:`NoIdentifierAvailable` when ``used`` already holds ``max_targets`` identifiers in range.
    """
    limit = effective_max_targets(max_targets)
    taken = {i for i in used if 1 <= i <= limit}
    if len(taken) >= limit:
        raise NoIdentifierAvailable()
    if prefer is not None and 1 <= prefer <= limit and prefer not in taken:
        return prefer
    # Draw first (cheap when the stream is sparse), then fall back to the exact list of free ones.
    for _ in range(8):
        candidate = rng.randint(1, limit)
        if candidate not in taken:
            return candidate
    return rng.choice([i for i in range(1, limit + 1) if i not in taken])
