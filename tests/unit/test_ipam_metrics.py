"""The IPAM's metric families from a hand-made prefix tree, and the Allocate results the registry counts."""
from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from meridio.ipam import metrics, tree
from meridio.ipam.registry import AllocationResult, RequestError
from tests.unit.test_ipam_registry import DEFAULT_LAYOUTS, child, layout, make

V4 = tree.Family.IPV4


def samples_of(fams: list[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {s.name: [(x.labels, x.value) for x in f.samples if x.name == s.name] for f in fams for s in f.samples}


def entry(*path: str, network: str) -> tree.Entry:
    return tree.Entry(path, ipaddress.ip_network(network), 0.0)


def rows(fams: list[Any], name: str, family: str = "ipv4") -> dict[tuple[str, str], float]:
    return {(labels["conduit"], labels["level"]): v for labels, v in samples_of(fams)[name]
            if labels["family"] == family and labels["trench"] == "trench-a"}


TREE = [entry("trench-a-0", network="172.16.0.0/16"),
        entry("trench-a-0", "c1", network="172.16.0.0/20"),
        entry("trench-a-0", "c1", "node-1", network="172.16.0.0/24"),
        entry("trench-a-0", "c1", "node-1", "bridge", network="172.16.0.1/32"),
        entry("trench-a-0", "c1", "node-1", "t1-src", network="172.16.0.2/32"),
        entry("trench-a-0", "c1", "node-2", network="172.16.1.0/24"),
        entry("trench-a-0", "c2", network="172.16.16.0/20"),
        entry("trench-b-0", network="10.0.0.0/8"),  # another trench in the same store: not ours
        entry("trench-b-0", "c9", network="10.0.0.0/20")]


def test_prefixes_in_use_and_capacity_per_pool_and_level() -> None:
    fams = metrics.families(trench="trench-a", layouts=[layout()], entries=TREE, unplaced={}, allocations={})
    assert rows(fams, "meridio_ipam_prefixes_in_use") == {
        ("", "conduit"): 2, ("c1", "node"): 2, ("c1", "address"): 2, ("c2", "node"): 0, ("c2", "address"): 0}
    assert rows(fams, "meridio_ipam_prefix_capacity") == {
        ("", "conduit"): 16, ("c1", "node"): 16, ("c1", "address"): 2 * 254, ("c2", "node"): 16,
        ("c2", "address"): 0}
    assert {labels["trench"] for f in fams for labels in (x.labels for x in f.samples)} == {"trench-a"}


def test_each_served_family_has_its_pools_and_unplaced_conduits() -> None:
    fams = metrics.families(trench="trench-a", layouts=DEFAULT_LAYOUTS, entries=TREE,
                            unplaced={tree.Family.IPV6: {"c3"}}, allocations={AllocationResult.ALLOCATED: 3})
    assert rows(fams, "meridio_ipam_prefix_capacity", "ipv6") == {("", "conduit"): 256}
    got = samples_of(fams)
    assert got["meridio_ipam_conduits_unplaced"] == [({"trench": "trench-a", "family": "ipv4"}, 0),
                                                     ({"trench": "trench-a", "family": "ipv6"}, 1)]
    assert got["meridio_ipam_allocations_total"] == [({"trench": "trench-a", "result": "allocated"}, 3),
                                                     ({"trench": "trench-a", "result": "refused"}, 0),
                                                     ({"trench": "trench-a", "result": "failed"}, 0)]


async def test_the_registry_counts_allocations_and_refusals() -> None:
    reg = make()
    await reg.allocate(child("bridge"))
    await reg.allocate(child("bridge"))  # again: the same answer, counted again
    with pytest.raises(RequestError):
        await reg.allocate(child("x", family=7))
    with pytest.raises(tree.ConduitNotFound):
        await reg.allocate(child("x", conduit="unknown"), timeout=0)
    assert {r.value: n for r, n in reg.allocations.items()} == {"allocated": 2, "refused": 2, "failed": 0}
    fams = metrics.IpamMetrics(reg)._families()
    assert rows(fams, "meridio_ipam_prefixes_in_use")[("conduit-a", "address")] == 1
