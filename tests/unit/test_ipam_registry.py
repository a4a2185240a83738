"""IPAM allocation behaviour (Meridio pkg/ipam, reference §3.9), through the registry.

Real: the pure planners and sqlite (in memory here; on disk in test_ipam_store.py). Fake: the clock
(:class:`FakeClock`), so garbage collection and refresh damping are exact.
"""
from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable

import pytest

from meridio.common.clock import FakeClock
from meridio.ipam import registry as regmod
from meridio.ipam import store as storemod
from meridio.ipam import tree
from meridio.ipam.registry import ChildRequest, Registry

TRENCH = "trench-a"
V4, V6 = tree.Family.IPV4, tree.Family.IPV6


def layout(family: tree.Family = V4, prefix: str = "172.16.0.0/16", conduit: int = 20,
           node: int = 24) -> tree.Layout:
    return tree.Layout(family, ipaddress.ip_network(prefix), conduit, node)


DEFAULT_LAYOUTS = (layout(), layout(V6, "fd00::/48", 56, 64))


def make(layouts: Iterable[tree.Layout] = DEFAULT_LAYOUTS, conduits: Iterable[str] = ("conduit-a",),
         clock: FakeClock | None = None, store: storemod.Store | None = None) -> Registry:
    reg = Registry(store or storemod.Store.open(":memory:"), trench=TRENCH, layouts=layouts,
                   clock=clock or FakeClock())
    reg.set_conduits(list(conduits))
    return reg


def child(name: str, node: str = "node-1", conduit: str = "conduit-a", family: int = 0,
          trench: str = TRENCH) -> ChildRequest:
    return ChildRequest(name=name, trench=trench, conduit=conduit, node=node, family=family)


async def allocate(reg: Registry, *requests: ChildRequest) -> list[str]:
    return [str(await reg.allocate(r, timeout=0)) for r in requests]


async def test_children_get_consecutive_addresses_after_the_reserved_first_one() -> None:
    reg = make()
    got = await allocate(reg, child("bridge"), child("c1-src"), child("c1-dst"))
    assert got == ["172.16.0.1/24", "172.16.0.2/24", "172.16.0.3/24"]


async def test_nodes_get_consecutive_node_prefixes_in_the_conduit_prefix() -> None:
    reg = make()
    got = await allocate(reg, child("bridge", "node-1"), child("bridge", "node-2"), child("bridge", "node-3"))
    assert got == ["172.16.0.1/24", "172.16.1.1/24", "172.16.2.1/24"]


async def test_conduits_get_consecutive_conduit_prefixes_in_name_order() -> None:
    reg = make(conduits=["conduit-b", "conduit-a", "conduit-c"])
    assert {n: str(e.network) for n, e in reg.conduits(V4).items()} == {
        "conduit-a": "172.16.0.0/20", "conduit-b": "172.16.16.0/20", "conduit-c": "172.16.32.0/20"}
    assert await allocate(reg, child("bridge", conduit="conduit-c")) == ["172.16.32.1/24"]


async def test_ipv6_allocations_follow_the_same_scheme() -> None:
    reg = make(conduits=["conduit-a", "conduit-b"])
    got = await allocate(reg, child("bridge", family=1), child("x-src", family=1),
                         child("bridge", node="node-2", family=1),
                         child("bridge", conduit="conduit-b", family=1))
    assert got == ["fd00::1/64", "fd00::2/64", "fd00:0:0:1::1/64", "fd00:0:0:100::1/64"]


async def test_both_families_are_allocated_independently_for_the_same_child() -> None:
    reg = make()
    await allocate(reg, child("bridge"))
    assert await allocate(reg, child("c1-src", family=1), child("c1-src")) == ["fd00::1/64", "172.16.0.2/24"]


async def test_returned_prefix_length_is_the_node_prefix_length() -> None:
    reg = make(layouts=[layout(prefix="10.0.0.0/8", conduit=12, node=22)])
    allocation = await reg.allocate(child("bridge"), timeout=0)
    assert (allocation.address, allocation.prefix_length) == ("10.0.0.1", 22)


async def test_reallocating_an_existing_child_returns_the_same_address() -> None:
    reg = make()
    first = await allocate(reg, child("bridge"), child("c1-src"))
    again = await allocate(reg, child("c1-src"), child("bridge"))
    assert again == first[::-1]
    assert len([e for e in reg.entries() if e.level == tree.Level.CHILD]) == 2


async def test_released_address_is_reused_first_fit() -> None:
    reg = make()
    await allocate(reg, child("a"), child("b"), child("c"))
    reg.release(child("b"))
    assert await allocate(reg, child("d"), child("e")) == ["172.16.0.2/24", "172.16.0.4/24"]


def test_releasing_unknown_children_nodes_and_conduits_is_not_an_error() -> None:
    reg = make()
    before = reg.entries()
    reg.release(child("nobody"))
    reg.release(child("nobody", node="no-node"))
    reg.release(child("nobody", conduit="no-conduit"))
    assert reg.entries() == before


async def test_node_reserves_first_and_last_address() -> None:
    reg = make(layouts=[layout(prefix="172.16.0.0/24", conduit=26, node=29)])
    got = await allocate(reg, *(child(f"c{i}") for i in range(6)))
    assert got == [f"172.16.0.{i}/29" for i in range(1, 7)]
    with pytest.raises(tree.NoMorePrefix, match="no more prefix available"):
        await reg.allocate(child("c6"), timeout=0)


async def test_addresses_per_node_are_node_size_minus_two() -> None:
    reg = make(layouts=[layout(prefix="172.16.0.0/20", conduit=22, node=26)])
    await allocate(reg, *(child(f"c{i}") for i in range(2 ** 6 - 2)))
    with pytest.raises(tree.NoMorePrefix, match="no more prefix available"):
        await reg.allocate(child("one-too-many"), timeout=0)


async def test_nodes_per_conduit_are_two_to_the_node_minus_conduit_length() -> None:
    reg = make(layouts=[layout(prefix="172.16.0.0/20", conduit=22, node=24)])
    got = await allocate(reg, *(child("bridge", node=f"node-{i}") for i in range(4)))
    assert got == [f"172.16.{i}.1/24" for i in range(4)]
    with pytest.raises(tree.NoMorePrefix, match="no more prefix available"):
        await reg.allocate(child("bridge", node="node-4"), timeout=0)


async def test_conduits_per_trench_are_two_to_the_conduit_minus_trench_length() -> None:
    names = [f"conduit-{i}" for i in range(5)]
    reg = make(layouts=[layout(prefix="172.16.0.0/22", conduit=24, node=26)], conduits=names)
    assert sorted(reg.conduits(V4)) == names[:4]
    with pytest.raises(tree.NoMorePrefix, match="no more prefix available"):
        await reg.allocate(child("bridge", conduit="conduit-4"), timeout=0)


async def test_removing_a_conduit_frees_room_for_an_unplaced_one() -> None:
    names = [f"conduit-{i}" for i in range(5)]
    reg = make(layouts=[layout(prefix="172.16.0.0/22", conduit=24, node=26)], conduits=names)
    reg.set_conduits(names[1:])
    assert str(reg.conduits(V4)["conduit-4"].network) == "172.16.0.0/24"
    assert await allocate(reg, child("bridge", conduit="conduit-4")) == ["172.16.0.1/26"]


async def test_removed_conduit_takes_its_nodes_and_children_with_it() -> None:
    reg = make(conduits=["conduit-a", "conduit-b"])
    await allocate(reg, child("bridge"), child("c1-src", family=1), child("bridge", conduit="conduit-b"))
    reg.set_conduits(["conduit-b"])
    paths = {e.path for e in reg.entries()}
    assert not [p for p in paths if len(p) > 1 and p[1] == "conduit-a"]
    assert ("trench-a-0", "conduit-b", "node-1", "bridge") in paths


async def test_readded_conduit_starts_empty() -> None:
    reg = make()
    await allocate(reg, child("a"), child("b"))
    reg.set_conduits([])
    reg.set_conduits(["conduit-a"])
    assert await allocate(reg, child("b")) == ["172.16.0.1/24"]


@pytest.mark.parametrize("family", [1, 7], ids=["ipv6-not-served", "unknown-family"])
async def test_family_not_served_cannot_be_allocated(family: int) -> None:
    reg = make(layouts=[layout()])
    with pytest.raises(regmod.RequestError, match="cannot allocate in this ip family"):
        await reg.allocate(child("bridge", family=family), timeout=0)
    with pytest.raises(regmod.RequestError, match="cannot allocate in this ip family"):
        reg.release(child("bridge", family=family))


async def test_ipv6_only_trench_refuses_ipv4() -> None:
    reg = make(layouts=[layout(V6, "fd00::/48", 56, 64)])
    assert await allocate(reg, child("bridge", family=1)) == ["fd00::1/64"]
    with pytest.raises(regmod.RequestError, match="cannot allocate in this ip family"):
        await reg.allocate(child("bridge", family=0), timeout=0)


async def test_other_trench_has_no_corresponding_trench() -> None:
    reg = make()
    with pytest.raises(regmod.RequestError, match="no corresponding trench.*'trench-b'"):
        await reg.allocate(child("bridge", trench="trench-b"), timeout=0)


async def test_allocate_waits_until_the_nsp_announces_the_conduit() -> None:
    reg = make(conduits=[])
    pending = asyncio.create_task(reg.allocate(child("bridge", conduit="conduit-new"), timeout=5))
    await asyncio.sleep(0)
    reg.set_conduits(["conduit-other"])
    await asyncio.sleep(0.01)
    assert not pending.done()
    reg.set_conduits(["conduit-other", "conduit-new"])
    assert str(await pending) == "172.16.16.1/24"


async def test_allocate_gives_up_at_its_timeout_when_the_conduit_never_appears() -> None:
    reg = make(conduits=[])
    with pytest.raises(tree.ConduitNotFound, match="conduit-x"):
        await reg.allocate(child("bridge", conduit="conduit-x"), timeout=0.05)
    assert [e.level for e in reg.entries()] == [tree.Level.TRENCH, tree.Level.TRENCH]


async def test_failed_write_changes_nothing_in_memory() -> None:
    store = storemod.Store.open(":memory:")
    reg = make(store=store)
    before = reg.entries()
    store.close()
    with pytest.raises(storemod.IpamStoreError, match="cannot write"):
        await reg.allocate(child("bridge"), timeout=0)
    assert reg.entries() == before


# --- garbage collection and refresh ---------------------------------------------------------------

MIN = 60.0
THRESHOLD = 40 * MIN


def updated_at(reg: Registry, *path: str) -> float:
    entry = {e.path: e for e in reg.entries()}[("trench-a-0",) + path]
    return entry.updated_at


async def test_idle_nodes_and_children_are_collected_after_the_threshold() -> None:
    clock = FakeClock()
    reg = make(clock=clock)
    await allocate(reg, child("bridge"), child("bridge", node="node-2"))
    clock.advance(THRESHOLD)
    assert reg.collect_garbage(THRESHOLD) == 0
    clock.advance(1)
    assert reg.collect_garbage(THRESHOLD) == 4
    assert sorted(e.level for e in reg.entries()) == [1, 1, 2, 2]


async def test_allocate_refreshes_the_child_so_it_is_not_collected() -> None:
    clock = FakeClock()
    reg = make(clock=clock)
    await allocate(reg, child("bridge"), child("stale"))
    clock.advance(30 * MIN)
    await allocate(reg, child("bridge"))
    clock.advance(20 * MIN)
    reg.collect_garbage(THRESHOLD)
    assert {e.path[-1] for e in reg.entries() if e.level >= tree.Level.NODE} == {"node-1", "bridge"}


async def test_node_refresh_is_damped_to_once_a_minute() -> None:
    clock = FakeClock()
    reg = make(clock=clock)
    await allocate(reg, child("a"))
    created = updated_at(reg, "conduit-a", "node-1")
    clock.advance(59)
    await allocate(reg, child("b"))
    assert updated_at(reg, "conduit-a", "node-1") == created
    clock.advance(1)
    reg.release(child("b"))
    assert updated_at(reg, "conduit-a", "node-1") == created + 60


async def test_collected_node_takes_its_children_and_is_recreated_on_next_allocate() -> None:
    clock = FakeClock()
    reg = make(clock=clock)
    await allocate(reg, child("a"), child("b"), child("bridge", node="node-2"))
    clock.advance(THRESHOLD + 1)
    reg.collect_garbage(THRESHOLD)
    assert await allocate(reg, child("b", node="node-2")) == ["172.16.0.1/24"]


def test_trench_and_conduit_prefixes_are_never_collected() -> None:
    clock = FakeClock()
    reg = make(clock=clock)
    clock.advance(100 * THRESHOLD)
    assert reg.collect_garbage(THRESHOLD) == 0
    assert len(reg.entries()) == 4


async def test_a_conduit_unlisted_for_less_than_the_grace_keeps_its_prefix_and_addresses() -> None:
    clock = FakeClock()
    reg = Registry(storemod.Store.open(":memory:"), trench=TRENCH, layouts=DEFAULT_LAYOUTS, clock=clock,
                   release_grace=300.0)
    reg.set_conduits(["conduit-a"])
    (first,) = await allocate(reg, child("t-1"))
    reg.set_conduits([])  # a configuration that vanished for a moment
    clock.advance(299.0)
    reg.release_departed()
    assert "conduit-a" in reg.conduits(V4)
    assert await allocate(reg, child("t-1")) == [first]  # the same client re-allocating: the same address
    reg.set_conduits(["conduit-a"])  # the configuration is back: the clock of the grace stops
    clock.advance(1000.0)
    reg.release_departed()
    assert await allocate(reg, child("t-1")) == [first]
    (second,) = await allocate(reg, child("t-2"))
    assert second != first  # a new client is never handed an address still held


async def test_a_conduit_really_removed_is_released_after_the_grace() -> None:
    clock = FakeClock()
    reg = Registry(storemod.Store.open(":memory:"), trench=TRENCH, layouts=DEFAULT_LAYOUTS, clock=clock,
                   release_grace=300.0)
    reg.set_conduits(["conduit-a", "conduit-b"])
    await allocate(reg, child("t-1"))
    reg.set_conduits(["conduit-b"])
    assert reg.next_release_in() == 300.0
    clock.advance(300.0)
    assert reg.next_release_in() == 0.0
    reg.release_departed()
    assert set(reg.conduits(V4)) == {"conduit-b"} and reg.next_release_in() is None
    assert not [e for e in reg.entries() if "conduit-a" in e.path]


def test_without_a_grace_an_unlisted_conduit_is_released_at_once() -> None:
    reg = make(conduits=("conduit-a", "conduit-b"))
    reg.set_conduits(["conduit-b"])
    assert set(reg.conduits(V4)) == {"conduit-b"}
