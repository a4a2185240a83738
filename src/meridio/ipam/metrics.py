"""The IPAM's Prometheus metrics (``IPAM_METRICS_ENABLED``, ``/metrics`` on ``IPAM_METRICS_PORT``, 2226).

Families, labelled ``trench`` and ``family`` (``ipv4``, ``ipv6``), per pool of the prefix tree:

- ``meridio_ipam_prefixes_in_use{conduit,level}``: prefixes allocated at ``level`` —
  ``conduit`` (conduit prefixes in the trench prefix; ``conduit`` is empty), ``node`` (node prefixes in
  the conduit's prefix), ``address`` (target, bridge and LB addresses in the conduit's node prefixes);
- ``meridio_ipam_prefix_capacity{conduit,level}``: how many fit there: ``2^(conduit length - trench
  length)`` conduits, ``2^(node length - conduit length)`` nodes per conduit, and for addresses the
  node prefixes in use times their usable addresses (the first and last are reserved);
- ``meridio_ipam_conduits_unplaced``: conduits of the NSP that got no prefix (the trench prefix is full);
- ``meridio_ipam_allocations_total{result}`` (``trench`` only): Allocate calls ``allocated``,
  ``refused`` (bad request, no free prefix, unknown conduit) or ``failed`` (not stored).

Read at scrape time from the registry's tree (one owner: the event loop); nothing is kept for them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from meridio.common import metrics
from meridio.ipam import tree
from meridio.ipam.registry import AllocationResult, Registry

__all__ = ["IpamMetrics", "families"]

_LABELS = ["trench", "family", "conduit", "level"]
_Rows = list[tuple[tuple[str, ...], float]]


def _pools(trench: str, layout: tree.Layout, entries: Iterable[tree.Entry]) -> tuple[_Rows, _Rows]:
    """(in use, capacity) samples of one family's tree."""
    fam = layout.family.name.lower()
    root = tree.trench_path(trench, layout.family)
    nodes: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for e in entries:
        if e.path[:1] != root or e.level < tree.Level.CONDUIT:
            continue
        conduit = e.path[1]
        nodes.setdefault(conduit, 0)
        addresses.setdefault(conduit, 0)
        if e.level == tree.Level.NODE:
            nodes[conduit] += 1
        elif e.level == tree.Level.CHILD:
            addresses[conduit] += 1
    per_node = 2 ** (layout.child_length - layout.node_length) - 2
    in_use: _Rows = [((trench, fam, "", "conduit"), float(len(nodes)))]
    capacity: _Rows = [((trench, fam, "", "conduit"), float(2 ** (layout.conduit_length - layout.prefix.prefixlen)))]
    for conduit in sorted(nodes):
        in_use += [((trench, fam, conduit, "node"), float(nodes[conduit])),
                   ((trench, fam, conduit, "address"), float(addresses[conduit]))]
        capacity += [((trench, fam, conduit, "node"), float(2 ** (layout.node_length - layout.conduit_length))),
                     ((trench, fam, conduit, "address"), float(nodes[conduit] * per_node))]
    return in_use, capacity


def families(*, trench: str, layouts: Iterable[tree.Layout], entries: Iterable[tree.Entry],
             unplaced: Mapping[tree.Family, Iterable[str]], allocations: Mapping[AllocationResult, int]
             ) -> list[metrics.Family]:
    """Every IPAM family from plain state (pure: the unit tests call it with hand-made values)."""
    entries = list(entries)
    in_use: _Rows = []
    capacity: _Rows = []
    waiting: _Rows = []
    for layout in sorted(layouts, key=lambda la: la.family):
        used, room = _pools(trench, layout, entries)
        in_use += used
        capacity += room
        waiting.append(((trench, layout.family.name.lower()), float(len(list(unplaced.get(layout.family, ()))))))
    return [
        metrics.gauge("ipam_prefixes_in_use", "Prefixes allocated in the pool (level: what is allocated)",
                      _LABELS, in_use),
        metrics.gauge("ipam_prefix_capacity", "Prefixes that fit in the pool (level: what is allocated)",
                      _LABELS, capacity),
        metrics.gauge("ipam_conduits_unplaced", "Conduits that got no prefix: the trench prefix is full",
                      ["trench", "family"], waiting),
        metrics.counter("ipam_allocations", "Allocate calls, by result", ["trench", "result"],
                        [((trench, r.value), allocations.get(r, 0)) for r in AllocationResult]),
    ]


class IpamMetrics:
    """The IPAM's registry: one collector reading :class:`~meridio.ipam.registry.Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.metrics = metrics.Metrics()
        self._registry = registry
        self.metrics.collect(self._families)

    def _families(self) -> list[metrics.Family]:
        r = self._registry
        return families(trench=r.trench, layouts=r.layouts.values(), entries=r.entries(),
                        unplaced={f: r.unplaced(f) for f in r.layouts}, allocations=r.allocations)
