"""The FRONTEND target follows connectivity: registered (and refreshed) while connected, unregistered on
loss, retried when the NSP cannot be reached. The registry here is an in-memory fake (``FakeRegistry``)."""
from __future__ import annotations

import asyncio

import pytest

from meridio.api import model
from meridio.common.retry import Backoff, TemporaryError
from meridio.frontend import announce, registration

TARGET = announce.frontend_target("fe-0")


class FakeRegistry:
    """Records calls; fails the next ``failures`` calls with TemporaryError (NSP unreachable)."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.failures = failures

    async def _call(self, what: str, target: model.Target) -> None:
        assert target == TARGET
        if self.failures:
            self.failures -= 1
            self.calls.append(f"{what}-failed")
            raise TemporaryError("NSP unavailable")
        self.calls.append(what)

    async def register(self, target: model.Target) -> None:
        await self._call("register", target)

    async def unregister(self, target: model.Target) -> None:
        await self._call("unregister", target)


async def run_for(reg: FakeRegistry, state: dict[str, bool], wake: asyncio.Event, steps: list[tuple[float, bool]],
                  refresh_s: float = 10.0) -> None:
    task = asyncio.ensure_future(registration.keep_registered(
        reg, TARGET, lambda: state["up"], wake, refresh_s=refresh_s, backoff=Backoff(0.01, 0.02)))
    try:
        for delay, up in steps:
            await asyncio.sleep(delay)
            state["up"] = up
            wake.set()
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_connectivity_registers_and_its_loss_unregisters_once() -> None:
    reg, state = FakeRegistry(), {"up": False}
    await run_for(reg, state, asyncio.Event(), [(0.02, True), (0.05, False), (0.05, False)])
    assert reg.calls == ["register", "unregister"]


async def test_a_connected_frontend_refreshes_its_registration_before_expiry() -> None:
    reg, state = FakeRegistry(), {"up": True}
    await run_for(reg, state, asyncio.Event(), [(0.3, True)], refresh_s=0.05)
    assert reg.calls.count("register") >= 2 and "unregister" not in reg.calls


async def test_an_unreachable_nsp_is_retried_until_the_registration_succeeds() -> None:
    reg, state = FakeRegistry(failures=2), {"up": True}
    await run_for(reg, state, asyncio.Event(), [(0.1, True)])
    assert reg.calls[:3] == ["register-failed", "register-failed", "register"]


async def test_without_connectivity_nothing_is_registered() -> None:
    reg, state = FakeRegistry(), {"up": False}
    await run_for(reg, state, asyncio.Event(), [(0.05, False)], refresh_s=0.01)
    assert reg.calls == []
