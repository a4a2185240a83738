"""Conduit prefixes follow the NSP conduit watch.

Real: the registry and sqlite (in memory). Fake: the NSP (:class:`FakeConduitSource`, scripted watch
sessions; the real NSP is used in tests/integration/test_ipam.py), the clock and the retry sleep.
"""
from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Sequence

import pytest

from meridio.api import model
from meridio.common.clock import FakeClock
from meridio.common.retry import Backoff, TemporaryError
from meridio.ipam import conduits as conduitsmod
from meridio.ipam import store as storemod
from meridio.ipam import tree
from meridio.ipam.registry import ChildRequest, Registry

TRENCH = model.Trench("trench-a")
Session = list["Sequence[model.Conduit] | Exception"]


class FakeConduitSource:
    """A fake NSP: each watch call plays the next scripted session, then hangs once the script is over."""

    def __init__(self, *sessions: Session) -> None:
        self.sessions = list(sessions)
        self.filters: list[model.Conduit] = []

    async def watch_conduits(self, conduit: model.Conduit) -> AsyncIterator[Sequence[model.Conduit]]:
        self.filters.append(conduit)
        if not self.sessions:
            await asyncio.Event().wait()
        for item in self.sessions.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


def registry() -> Registry:
    layouts = [tree.Layout(tree.Family.IPV4, ipaddress.ip_network("172.16.0.0/16"), 20, 24)]
    return Registry(storemod.Store.open(":memory:"), trench="trench-a", layouts=layouts, clock=FakeClock())


def conduit(name: str, trench: model.Trench | None = TRENCH) -> model.Conduit:
    return model.Conduit(name=name, trench=trench)


async def follow(source: FakeConduitSource, reg: Registry, sleeps: list[float]) -> None:
    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    task = asyncio.create_task(conduitsmod.follow_conduits(source, reg, sleep=sleep,
                                                           backoff=Backoff(initial=1.0, cap=4.0)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done(), task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_conduit_list_is_applied_as_the_desired_state() -> None:
    reg = registry()
    source = FakeConduitSource([[conduit("conduit-a"), conduit("conduit-b")], [conduit("conduit-b")]])
    await follow(source, reg, [])
    assert sorted(reg.conduits(tree.Family.IPV4)) == ["conduit-b"]
    assert source.filters[0] == model.Conduit(name="", trench=TRENCH)


async def test_conduits_of_other_trenches_are_ignored() -> None:
    reg = registry()
    source = FakeConduitSource([[conduit("conduit-a"), conduit("conduit-x", model.Trench("trench-b")),
                                 conduit("conduit-n", None)]])
    await follow(source, reg, [])
    assert sorted(reg.conduits(tree.Family.IPV4)) == ["conduit-a", "conduit-n"]


async def test_failed_watch_keeps_the_prefixes_and_watches_again_with_backoff() -> None:
    reg = registry()
    source = FakeConduitSource([[conduit("conduit-a")], TemporaryError("nsp down")],
                               [TemporaryError("still down")],
                               [],
                               [[conduit("conduit-a"), conduit("conduit-c")]])
    sleeps: list[float] = []
    await follow(source, reg, sleeps)
    assert sleeps == [1.0, 2.0, 4.0, 1.0]  # doubling while failing; reset by the update of session 4
    assert sorted(reg.conduits(tree.Family.IPV4)) == ["conduit-a", "conduit-c"]


async def test_allocations_survive_a_watch_failure() -> None:
    reg = registry()
    reg.set_conduits(["conduit-a"])
    request = ChildRequest("bridge", "trench-a", "conduit-a", "node-1", 0)
    allocated = str(await reg.allocate(request, timeout=0))
    await follow(FakeConduitSource([TemporaryError("nsp restarting")], []), reg, [])
    assert str(await reg.allocate(request, timeout=0)) == allocated == "172.16.0.1/24"
    assert len(reg.entries()) == 4
