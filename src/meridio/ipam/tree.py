"""The IPAM prefix hierarchy and the pure planners of every operation on it (no I/O, no clock).

Per IP family the hierarchy is (Meridio ``pkg/ipam``, reference §3.9)::

    trench prefix  "<trench>-<family int>"   e.g. trench-a-0  172.16.0.0/16   (from settings)
      conduit      "<conduit name>"           172.16.0.0/20   (from the NSP conduit watch)
        node       "<node name>"              172.16.1.0/24   (created on first Allocate)
          child    "bridge", "<id>-src", ...  172.16.1.6/32   (first and last node address reserved)

An entry is identified by its path of names from the trench down. A planner reads a :class:`Tree` and
returns the changes an operation implies (``Put``/``Delete``) without applying them, so the owner can
persist them first and apply them to memory only once they are stored: an operation either happens
completely or not at all.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Iterable, Iterator, Sequence

from meridio.common.retry import PermanentError, TemporaryError
from meridio.ipam import prefixes
from meridio.ipam.prefixes import Network, NoMorePrefix

__all__ = [
    "Allocation",
    "Change",
    "ConduitNotFound",
    "Delete",
    "Entry",
    "Family",
    "Layout",
    "LayoutConflict",
    "LayoutError",
    "Level",
    "NoMorePrefix",
    "Path",
    "Put",
    "Tree",
    "plan_allocate",
    "plan_collect",
    "plan_conduits",
    "plan_release",
    "plan_trench",
    "trench_path",
]

Path = tuple[str, ...]


class Family(enum.IntEnum):
    """``ipam.v1.IPFamily``: the integer is part of the trench prefix name."""

    IPV4 = 0
    IPV6 = 1

    @property
    def version(self) -> int:
        return 4 if self is Family.IPV4 else 6


class Level(enum.IntEnum):
    """Depth of an entry in the hierarchy (= length of its path)."""

    TRENCH = 1
    CONDUIT = 2
    NODE = 3
    CHILD = 4


class LayoutError(PermanentError, ValueError):
    """The configured prefix and lengths cannot form a hierarchy."""


class LayoutConflict(PermanentError):
    """The stored trench prefix differs from the configured one."""


class ConduitNotFound(TemporaryError):
    """The conduit has no prefix (yet): the NSP has not announced it."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """One family's trench prefix and the prefix lengths of the conduit and node levels."""

    family: Family
    prefix: Network
    conduit_length: int
    node_length: int

    def __post_init__(self) -> None:
        name = self.family.name.lower()
        if self.prefix.version != self.family.version:
            raise LayoutError(f"prefix {self.prefix} is not an {name} prefix")
        host = self.prefix.max_prefixlen
        if not self.prefix.prefixlen < self.conduit_length < self.node_length <= host - 2:
            raise LayoutError(
                f"{name} prefix lengths must satisfy trench < conduit < node <= {host - 2} "
                f"(the first and last node address are reserved), got trench /{self.prefix.prefixlen}, "
                f"conduit /{self.conduit_length}, node /{self.node_length}")

    @property
    def child_length(self) -> int:
        return self.prefix.max_prefixlen


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path
    network: Network
    updated_at: float
    """Wall-clock seconds of the last allocation or refresh (garbage collection compares it)."""

    @property
    def level(self) -> Level:
        return Level(len(self.path))


@dataclasses.dataclass(frozen=True)
class Put:
    entry: Entry


@dataclasses.dataclass(frozen=True)
class Delete:
    path: Path


Change = Put | Delete


@dataclasses.dataclass(frozen=True)
class Allocation:
    """What Allocate returns: the child's address with the node's prefix length (``172.16.1.6/24``)."""

    address: str
    prefix_length: int

    def __str__(self) -> str:
        return f"{self.address}/{self.prefix_length}"


class Tree:
    """All entries, indexed by path and by parent. Mutated only by :meth:`apply`."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[Path, Entry] = {}
        self._children: dict[Path, dict[str, Entry]] = {}
        self.apply([Put(e) for e in sorted(entries, key=lambda e: len(e.path))])

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, path: Path) -> Entry | None:
        return self._entries.get(path)

    def children(self, path: Path) -> list[Entry]:
        return list(self._children.get(path, {}).values())

    def subtree(self, path: Path) -> list[Path]:
        """``path`` and all its descendants, deepest first (the order to delete them in)."""
        found: list[Path] = []
        stack = [path] if path in self._entries else []
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(child.path for child in self.children(current))
        return sorted(found, key=len, reverse=True)

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if isinstance(change, Put):
                entry = change.entry
                self._entries[entry.path] = entry
                self._children.setdefault(entry.path[:-1], {})[entry.path[-1]] = entry
            else:
                self._entries.pop(change.path, None)
                self._children.get(change.path[:-1], {}).pop(change.path[-1], None)
                self._children.pop(change.path, None)


def trench_path(trench: str, family: Family) -> Path:
    return (f"{trench}-{int(family)}",)


def plan_trench(tree: Tree, layout: Layout, trench: str, now: float) -> list[Change]:
    """Create the trench prefix, or check that the stored one is the configured one."""
    path = trench_path(trench, layout.family)
    stored = tree.get(path)
    if stored is None:
        return [Put(Entry(path, layout.prefix, now))]
    if stored.network != layout.prefix:
        raise LayoutConflict(
            f"trench prefix {path[0]} is stored as {stored.network} but configured as {layout.prefix}: "
            "the allocations made in the stored prefix would be lost")
    return []


def plan_conduits(tree: Tree, layout: Layout, trench: str, names: Collection[str],
                  now: float) -> tuple[list[Change], list[str]]:
    """Make the conduit prefixes exactly ``names``: remove the others with their descendants, then
    place the new ones first-fit in name order. Returns the changes and the names that found no room."""
    root = trench_path(trench, layout.family)
    current = {e.path[-1]: e for e in tree.children(root)}
    changes: list[Change] = []
    for gone in sorted(set(current) - set(names)):
        changes.extend(Delete(p) for p in tree.subtree(root + (gone,)))
        del current[gone]
    taken = [e.network for e in current.values()]
    unplaced: list[str] = []
    for name in sorted(set(names) - set(current)):
        try:
            network = prefixes.first_fit(layout.prefix, layout.conduit_length, taken)
        except NoMorePrefix:
            unplaced.append(name)
            continue
        taken.append(network)
        changes.append(Put(Entry(root + (name,), network, now)))
    return changes, unplaced


def plan_allocate(tree: Tree, layout: Layout, path: Path, now: float, *,
                  node_refresh: float) -> tuple[Allocation, list[Change]]:
    """Allocate (or re-allocate: same answer) the child at ``path`` = trench/conduit/node/child.

    Creates the node prefix on first use; refreshes the node at most every ``node_refresh`` seconds
    and the child every time. Raises :class:`ConduitNotFound` or :class:`NoMorePrefix`.
    """
    conduit = tree.get(path[:2])
    if conduit is None:
        raise ConduitNotFound(f"conduit {path[1]!r} has no prefix yet (not announced by the NSP)")
    changes: list[Change] = []
    node = tree.get(path[:3])
    if node is None:
        taken = [e.network for e in tree.children(conduit.path)]
        node = Entry(path[:3], _fit(conduit, layout.node_length, taken), now)
        changes.append(Put(node))
    elif now - node.updated_at >= node_refresh:
        node = dataclasses.replace(node, updated_at=now)
        changes.append(Put(node))
    child = tree.get(path)
    if child is None:
        taken = [e.network for e in tree.children(node.path)] + list(prefixes.edge_addresses(node.network))
        child = Entry(path, _fit(node, layout.child_length, taken), now)
    else:
        child = dataclasses.replace(child, updated_at=now)
    changes.append(Put(child))
    return Allocation(str(child.network.network_address), node.network.prefixlen), changes


def plan_release(tree: Tree, path: Path, now: float, *, node_refresh: float) -> list[Change]:
    """Remove the child at ``path`` (unknown: nothing to do) and refresh its node (damped)."""
    changes: list[Change] = []
    node = tree.get(path[:3])
    if node is not None and now - node.updated_at >= node_refresh:
        changes.append(Put(dataclasses.replace(node, updated_at=now)))
    if tree.get(path) is not None:
        changes.append(Delete(path))
    return changes


def plan_collect(tree: Tree, now: float, threshold: float) -> list[Change]:
    """Delete node and child entries not refreshed for ``threshold`` seconds, with their descendants."""
    stale = [e.path for e in tree if e.level >= Level.NODE and now - e.updated_at > threshold]
    doomed: dict[Path, None] = {}
    for path in sorted(stale, key=len):
        if any(path[:n] in doomed for n in range(1, len(path))):
            continue
        doomed.update(dict.fromkeys(tree.subtree(path)))
    return [Delete(p) for p in sorted(doomed, key=len, reverse=True)]


def _fit(parent: Entry, length: int, taken: list[Network]) -> Network:
    try:
        return prefixes.first_fit(parent.network, length, taken)
    except NoMorePrefix:
        raise NoMorePrefix(f"no more prefix available: no free /{length} in {'/'.join(parent.path)} "
                           f"{parent.network}") from None
