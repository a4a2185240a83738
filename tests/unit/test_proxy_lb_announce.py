"""The LB replica's LOADBALANCER announcement (``meridio.loadbalancer.announce``) over a fake registry."""
from __future__ import annotations

import asyncio

import pytest

from meridio.api import model
from meridio.common.clock import FakeClock
from meridio.common.retry import TemporaryError
from meridio.kernel import netns as netnsmod
from meridio.loadbalancer import announce
from meridio.proxy import plan

A = announce.Action


@pytest.mark.parametrize("unblocked,registered,since,expected", [
    (True, False, 0.0, A.REGISTER), (True, True, 5.0, A.NONE), (True, True, 20.0, A.REFRESH),
    (False, True, 0.0, A.UNREGISTER), (False, False, 99.0, A.NONE),
], ids=["first", "fresh", "refresh-due", "blocked", "blocked-idle"])
def test_the_announcement_follows_the_blocked_state_and_the_refresh_period(
        unblocked: bool, registered: bool, since: float, expected: announce.Action) -> None:
    assert announce.decide(unblocked=unblocked, registered=registered, since_refresh=since,
                           refresh=20.0) is expected


def test_the_announced_target_is_what_the_proxies_look_for() -> None:
    t = announce.lb_target(identifier="lb-a-1", netns="ns-lb", ifprefix="conduit-a-", trench="trench-a",
                           conduit="conduit-a-1")
    peers, problems = plan.lb_peers([t], trench="trench-a", conduit="conduit-a-1")
    assert problems == () and peers == {"lb-a-1": plan.LbPeer("lb-a-1", "ns-lb", "conduit-a-")}
    assert t.ips == () and t.stream is not None and t.stream.name == ""


class FakeRegistry:
    """FAKE NSP registry: records calls; can be made unreachable."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.down = False

    async def register(self, target: model.Target) -> None:
        if self.down:
            raise TemporaryError("NSP unreachable")
        self.calls.append("register")

    async def unregister(self, target: model.Target) -> None:
        if self.down:
            raise TemporaryError("NSP unreachable")
        self.calls.append("unregister")


def announcer(state: dict[str, bool], clock: FakeClock) -> tuple[announce.Announcer, FakeRegistry]:
    reg = FakeRegistry()
    t = announce.lb_target(identifier="lb-1", netns="ns", ifprefix="c", trench="t", conduit="c")
    return announce.Announcer(reg, t, lambda: state["up"], refresh=20.0, monotonic=clock.monotonic), reg


async def test_an_unblocked_replica_registers_twice_then_refreshes_and_withdraws_when_blocked() -> None:
    clock, state = FakeClock(), {"up": True}
    a, reg = announcer(state, clock)
    assert await a.step() is A.REGISTER and reg.calls == ["register", "register"]
    clock.advance(10)
    assert await a.step() is A.NONE
    clock.advance(10)
    assert await a.step() is A.REFRESH and reg.calls[-1] == "register"
    state["up"] = False
    assert await a.step() is A.UNREGISTER and reg.calls[-1] == "unregister" and not a.registered


async def test_a_registration_that_failed_is_tried_again() -> None:
    clock, state = FakeClock(), {"up": True}
    a, reg = announcer(state, clock)
    reg.down = True
    await a.step()
    assert not a.registered
    reg.down = False
    assert await a.step() is A.REGISTER and a.registered


async def test_a_stopping_replica_withdraws_its_announcement() -> None:
    clock, state = FakeClock(), {"up": True}
    a, reg = announcer(state, clock)
    task = asyncio.ensure_future(a.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert reg.calls == ["register", "register"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reg.calls[-1] == "unregister" and not a.registered


def test_the_own_namespace_name_is_found_by_inode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    os.symlink("/proc/self/ns/net", tmp_path / "mine")
    (tmp_path / "other").write_text("")
    assert netnsmod.own_name(str(tmp_path)) == "mine"
    assert netnsmod.own_name(str(tmp_path / "missing")) == ""
