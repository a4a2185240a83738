"""Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
Balancer", NSDI 2016, section 3.4): per-target offset/skip permutations, filled round-robin.

Pure and deterministic: permutations come from a keyed BLAKE2b of the target identifier, never from
Python's salted ``hash()``, so every LB replica in every process on every machine computes the same
table for the same identifiers. Tables hold *identifiers*; the caller maps them to its local fwmarks.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from meridio.kernel import native

__all__ = ["largest_prime_at_most", "table_size", "stable_hash", "permutation", "populate", "stream_seed",
           "populate_python", "changed_buckets", "disruption"]

TABLE_FACTOR = 100
"""M is the largest prime <= TABLE_FACTOR x max-targets (the paper keeps M >> N; Meridio uses 100)."""


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    for d in range(3, math.isqrt(n) + 1, 2):
        if n % d == 0:
            return False
    return True


def largest_prime_at_most(n: int) -> int:
    """The largest prime <= ``n`` (``n`` >= 2)."""
    if n < 2:
        raise ValueError(f"no prime <= {n}")
    while not _is_prime(n):
        n -= 1
    return n


def table_size(max_targets: int) -> int:
    """M for a stream of ``max_targets`` targets: 9973 for 100, 99991 for 1000, 999983 for 10000."""
    if max_targets < 1:
        raise ValueError(f"max-targets must be >= 1, not {max_targets}")
    return largest_prime_at_most(max(TABLE_FACTOR * max_targets, 2))


def stable_hash(data: str, purpose: str) -> int:
    """A 64-bit hash of ``data`` that is the same in every process (BLAKE2b keyed by ``purpose``)."""
    digest = hashlib.blake2b(data.encode(), digest_size=8, person=purpose.encode()[:16]).digest()
    return int.from_bytes(digest, "big")


def permutation(identifier: int, m: int, max_targets: int) -> tuple[int, int]:
    """The paper's (offset, skip) for one target: offset in [0, M), skip in [1, M).

    Unlike the paper, skips are made distinct per identifier: [1, M) is cut into ``max_targets`` slices
    and identifier ``i`` takes a hashed skip inside slice ``i``. Two targets with the same skip walk the
    table in lockstep and make the removal of one target move about 3.4 % of the other targets' buckets
    instead of about 0.7 % (N=10, M=9973; ``bench/lb_bench.py``); distinct skips remove that tail.
    """
    if not 1 <= identifier <= max_targets:
        raise ValueError(f"identifier {identifier} is outside 1..{max_targets}")
    width = (m - 1) // max_targets
    if width < 1:
        raise ValueError(f"table size {m} is too small for {max_targets} targets")
    key = str(identifier)
    skip = 1 + (identifier - 1) * width + stable_hash(key, "maglev-skip") % width
    return stable_hash(key, "maglev-offset") % m, skip


def populate(identifiers: Iterable[int], m: int, max_targets: int) -> tuple[int, ...]:
    """The lookup table: M entries, each the identifier owning that bucket; ``()`` without targets.

    ``m`` must be prime (see :func:`table_size`) so that every skip walks all buckets; identifiers must
    lie in 1..``max_targets``. Targets take turns in ascending identifier order (so the input order does
    not matter); each takes the next still-empty bucket of its own permutation, until all M buckets are
    filled. Every target ends with floor(M/N) or ceil(M/N) buckets.
    """
    ids = sorted(set(identifiers))
    if not ids:
        return ()
    perms = [permutation(i, m, max_targets) for i in ids]
    pos = [offset for offset, _ in perms]
    skips = [skip for _, skip in perms]
    if native.available():  # the same loop in C (kernel/native/maglev.c): 2 s -> well under 1 at M=999983
        return tuple(native.maglev_fill(ids, pos, skips, m))
    return populate_python(ids, pos, skips, m)


def populate_python(ids: Sequence[int], pos: list[int], skips: Sequence[int], m: int) -> tuple[int, ...]:
    """The fill loop of :func:`populate` in Python (targets ``ids`` in turn order, permutations given);
    used when the C helper is not built, and by the tests that check the C helper against it."""
    n = len(ids)
    pos = list(pos)
    table = [0] * m
    taken = bytearray(m)
    filled = 0
    while True:
        for t in range(n):
            c, skip = pos[t], skips[t]
            while taken[c]:
                c += skip
                if c >= m:
                    c -= m
            taken[c] = 1
            table[c] = ids[t]
            c += skip
            pos[t] = c - m if c >= m else c
            filled += 1
            if filled == m:
                return tuple(table)


def stream_seed(stream_name: str) -> int:
    """The 32-bit ``jhash`` seed of a stream: derived from its name, identical on every replica."""
    return stable_hash(stream_name, "maglev-seed") & 0xFFFFFFFF


def changed_buckets(old: Sequence[int], new: Sequence[int]) -> list[int]:
    """Buckets whose owner differs between two tables of the same size (an empty table owns nothing)."""
    if not old:
        return list(range(len(new)))
    if not new:
        return list(range(len(old)))
    return [b for b, (a, c) in enumerate(zip(old, new)) if a != c]


def disruption(old: Sequence[int], new: Sequence[int], removed: Iterable[int] = ()) -> float:
    """Collateral disruption: the share of buckets that moved although their old owner was not removed."""
    gone = set(removed)
    if not old:
        return 0.0
    moved = sum(1 for a, c in zip(old, new) if a != c and a not in gone)
    return moved / len(old)
