"""The objects of the load balancer's nftables table, as plain values the planner can diff.

A :class:`Ruleset` is the whole desired (or installed) content of ``table inet meridio-lb``: named
counters, sets, verdict/counter maps, the per-stream bucket maps and the chains. Each set and map
carries a comment that fingerprints its declaration, and every rule of a chain carries the chain's
fingerprint as its comment: nftables rewrites rules when it lists them, so after a restart the daemon
recognises what it installed by these fingerprints, not by re-parsing rules. Pure: no I/O.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Mapping

__all__ = ["FAMILY", "TABLE", "Hook", "SetObj", "MapObj", "BucketMapObj", "ChainObj", "Ruleset", "fingerprint",
           "canonical_interval", "safe_name", "NAME_RE"]

FAMILY = "inet"
TABLE = "meridio-lb"

NAME_RE = re.compile(r"^[A-Za-z_.][A-Za-z0-9/\-_.]*$")
"""What the nft scanner takes as an unquoted name (declarations do not accept quoted names)."""

_MAX_NAME = 200


def fingerprint(*parts: str) -> str:
    """A short stable digest of a declaration or of a chain's content."""
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=6).hexdigest()


def safe_name(prefix: str, *parts: str) -> str:
    """An nft object name from ``prefix`` and user-given names; hashed when they are not plain names."""
    name = "-".join((prefix, *parts))
    if NAME_RE.match(name) and len(name) <= _MAX_NAME:
        return name
    return f"{prefix}-x{fingerprint(*parts)}"


def canonical_interval(first: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       last: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address interval as nft lists it back: a prefix when it is one, else ``first-last``."""
    nets = list(ipaddress.summarize_address_range(first, last))
    if len(nets) == 1:
        return str(nets[0])
    return f"{first}-{last}"


@dataclasses.dataclass(frozen=True)
class Hook:
    """A base chain's hook: ``type filter hook prerouting priority -150; policy accept;``."""

    hook: str
    priority: int
    type: str = "filter"
    policy: str = "accept"

    def nft(self) -> str:
        return f"type {self.type} hook {self.hook} priority {self.priority}; policy {self.policy};"


@dataclasses.dataclass(frozen=True)
class SetObj:
    name: str
    decl: str
    """Declaration inside the braces without the comment, e.g. ``type ipv4_addr; flags interval;``."""
    elements: frozenset[str]

    @property
    def comment(self) -> str:
        return f"meridio fp={fingerprint('set', self.decl)}"


@dataclasses.dataclass(frozen=True)
class MapObj:
    """A map whose keys and values are given as nft text (``203.0.113.0/24`` : ``goto vip-...``)."""

    name: str
    decl: str
    elements: Mapping[str, str]

    @property
    def comment(self) -> str:
        return f"meridio fp={fingerprint('map', self.decl)}"


@dataclasses.dataclass(frozen=True)
class BucketMapObj:
    """A stream's Maglev map: bucket (0..M-1) -> fwmark; ``marks[b] == 0`` means no element."""

    name: str
    m: int
    seed: int
    offset: int
    max_targets: int
    marks: tuple[int, ...]

    @property
    def decl(self) -> str:
        # typeof numgen, not typeof jhash: listing a jhash-typed map segfaults nft 1.0.6.
        return f"typeof numgen inc mod {self.m} : meta mark;"

    @property
    def comment(self) -> str:
        params = f"offset={self.offset} max-targets={self.max_targets} m={self.m}"
        return f"meridio {params} seed={self.seed:#x} fp={fingerprint('bucket', self.decl, params)}"


@dataclasses.dataclass(frozen=True)
class ChainObj:
    name: str
    rules: tuple[str, ...]
    hook: Hook | None = None
    deps: tuple[str, ...] = ()
    """Comments of the sets/maps the rules use: a re-declared map forces the chain to be rewritten."""

    @property
    def fingerprint(self) -> str:
        return fingerprint("chain", self.hook.nft() if self.hook else "", *self.rules, "deps", *self.deps)


@dataclasses.dataclass(frozen=True)
class Ruleset:
    counters: frozenset[str]
    sets: Mapping[str, SetObj]
    maps: Mapping[str, MapObj]
    buckets: Mapping[str, BucketMapObj]
    chains: Mapping[str, ChainObj]
