"""First-fit sub-prefix arithmetic (pure; no state, no I/O).

Meridio (``pkg/ipam``) allocates first-fit: start at the parent's first sub-prefix of the requested
length and, while it collides with a sibling (or a reserved range), jump to the first aligned candidate
after that sibling. Collisions are overlaps, so siblings of other lengths are handled too.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Network", "NoMorePrefix", "edge_addresses", "first_fit"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NoMorePrefix(Exception):
    """The parent has no free sub-prefix of the requested length."""


def edge_addresses(parent: Network) -> tuple[Network, Network]:
    """The first and last single-address prefixes of ``parent`` (the node level reserves them)."""
    host = parent.max_prefixlen
    first = type(parent)((parent.network_address, host))
    last = type(parent)((parent.broadcast_address, host))
    return first, last


def first_fit(parent: Network, length: int, taken: Iterable[Network]) -> Network:
    """The first sub-prefix of ``parent`` with prefix ``length`` that overlaps nothing in ``taken``.

    Raises :class:`NoMorePrefix` when every candidate collides, and :class:`ValueError` when
    ``length`` cannot be a sub-prefix of ``parent``.
    """
    if not parent.prefixlen <= length <= parent.max_prefixlen:
        raise ValueError(f"/{length} is not a sub-prefix length of {parent}")
    size = 1 << (parent.max_prefixlen - length)
    end = int(parent.broadcast_address) + 1
    spans = sorted((int(n.network_address), int(n.broadcast_address) + 1) for n in taken
                   if n.version == parent.version and n.overlaps(parent))
    candidate = int(parent.network_address)
    for start, stop in spans:
        if stop <= candidate:
            continue
        if start >= candidate + size:
            break
        candidate = _align_up(stop, size)
    if candidate + size > end:
        raise NoMorePrefix(f"no more prefix available: no free /{length} in {parent}")
    return type(parent)((candidate, length))


def _align_up(value: int, size: int) -> int:
    return (value + size - 1) // size * size
