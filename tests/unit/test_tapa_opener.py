"""The TAPA's open/refresh algorithm against a FAKE NSP registry (tapa_fakes.FakeNsp) and a fake timer."""
from __future__ import annotations

import asyncio
import random

import pytest

from meridio.api import model
from meridio.tapa import identifiers, machine, opener
from tests.unit.tapa_fakes import FakeNsp, FakeSleeper, settle

STREAM = model.Stream("stream-a-i", model.Conduit("conduit-a-1", model.Trench("trench-a")), 4)
IPS = ("172.16.1.6/24", "fd00:0:0:1::6/64")
TIMING = opener.Timing(entry_timeout=30.0, pending_timeout=15.0, retry_interval=1.0)


async def test_open_registers_disabled_first_then_enabled() -> None:
    nsp = FakeNsp()
    identifier = await opener.register_new(nsp, STREAM, IPS, random.Random(0))
    assert 1 <= identifier <= 4
    assert nsp.calls == [f"register {identifier} DISABLED", f"register {identifier} ENABLED"]
    assert nsp.enabled(STREAM) == {",".join(IPS): str(identifier)}


async def test_open_avoids_identifiers_held_by_other_targets_of_any_status() -> None:
    nsp = FakeNsp()
    for ip, ident in (("172.16.1.2/24", 1), ("172.16.1.3/24", 2)):
        nsp.add_other(ip, ident, STREAM)
    nsp.add_other("172.16.1.4/24", 3, STREAM, status=model.TargetStatus.DISABLED)
    assert await opener.register_new(nsp, STREAM, IPS, random.Random(0)) == 4


async def test_a_collision_with_a_concurrent_opener_unregisters_and_picks_another_identifier() -> None:
    nsp = FakeNsp()
    reads = 0

    def concurrent_opener_takes_the_same_identifier() -> None:
        nonlocal reads
        reads += 1
        if reads == 2:  # right after our DISABLED registration
            ours = next(t for t in nsp.entries.values() if t.ips == IPS)
            nsp.add_other("172.16.1.9/24", int(ours.identifier or 0), STREAM, model.TargetStatus.DISABLED)

    nsp.before_targets = concurrent_opener_takes_the_same_identifier
    identifier = await opener.register_new(nsp, STREAM, IPS, random.Random(3))
    taken = next(t.identifier for t in nsp.entries.values() if t.ips == ("172.16.1.9/24",))
    assert str(identifier) != taken
    assert nsp.calls[:3] == [f"register {taken} DISABLED", "unregister", f"register {identifier} DISABLED"]
    assert nsp.enabled(STREAM) == {",".join(IPS): str(identifier)}


async def test_open_fails_when_every_identifier_is_taken() -> None:
    nsp = FakeNsp()
    for ident in range(1, 5):
        nsp.add_other(f"172.16.1.{ident + 10}/24", ident, STREAM)
    with pytest.raises(identifiers.NoIdentifierAvailable):
        await opener.register_new(nsp, STREAM, IPS, random.Random(0))
    assert nsp.calls == []


async def test_refresh_keeps_a_live_entry_and_reports_an_expired_one_as_lost() -> None:
    nsp = FakeNsp()
    identifier = await opener.register_new(nsp, STREAM, IPS, random.Random(0))
    assert await opener.refresh(nsp, STREAM, IPS, identifier) is True
    nsp.expire_all()
    assert await opener.refresh(nsp, STREAM, IPS, identifier) is False  # re-created DISABLED by the NSP


async def test_refresh_reports_lost_when_another_target_holds_our_identifier() -> None:
    nsp = FakeNsp()
    identifier = await opener.register_new(nsp, STREAM, IPS, random.Random(0))
    nsp.add_other("172.16.1.9/24", identifier, STREAM)
    assert await opener.refresh(nsp, STREAM, IPS, identifier) is False


class _Opener:
    """The opener task of one stream, with its reports collected."""

    def __init__(self, nsp: FakeNsp, sleeper: FakeSleeper, timing: opener.Timing = TIMING) -> None:
        self.reports: list[machine.Event] = []
        self.wake = asyncio.Event()
        self.task = asyncio.ensure_future(opener.run(nsp, STREAM, IPS, report=self.reports.append, wake=self.wake,
                                                     sleeper=sleeper, timing=timing, rng=random.Random(1)))

    def kinds(self) -> list[str]:
        return [type(r).__name__ for r in self.reports]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_the_opener_refreshes_every_entry_timeout_and_nothing_earlier() -> None:
    nsp, sleeper = FakeNsp(), FakeSleeper()
    o = _Opener(nsp, sleeper)
    await settle()
    assert o.kinds() == ["Opened"] and sleeper.pending == [30.0]
    registrations = len(nsp.calls)
    await sleeper.advance(29.0)
    assert len(nsp.calls) == registrations
    await sleeper.advance(1.0)
    assert nsp.calls[registrations:][0].endswith("ENABLED") and o.kinds() == ["Opened", "Opened"]
    await o.stop()


async def test_an_entry_expired_by_the_nsp_is_reopened_with_the_same_identifier_if_free() -> None:
    nsp, sleeper = FakeNsp(), FakeSleeper()
    o = _Opener(nsp, sleeper)
    await settle()
    before = nsp.enabled(STREAM)
    nsp.expire_all()
    await sleeper.advance(30.0)
    assert o.kinds() == ["Opened", "EntryLost", "Opened"]
    assert nsp.enabled(STREAM) == before
    await o.stop()


async def test_an_expired_entry_whose_identifier_was_taken_meanwhile_gets_another_one() -> None:
    nsp, sleeper = FakeNsp(), FakeSleeper()
    o = _Opener(nsp, sleeper)
    await settle()
    (old,) = nsp.enabled(STREAM).values()
    nsp.expire_all()
    nsp.add_other("172.16.1.9/24", int(old or 0), STREAM)
    await sleeper.advance(30.0)
    (new,) = [v for k, v in nsp.enabled(STREAM).items() if k == ",".join(IPS)]
    assert new != old and o.kinds()[-1] == "Opened"
    await o.stop()


async def test_nsp_down_fails_and_retries_every_second_until_it_returns_keeping_the_identifier() -> None:
    nsp, sleeper = FakeNsp(), FakeSleeper()
    o = _Opener(nsp, sleeper)
    await settle()
    before = nsp.enabled(STREAM)
    nsp.down = True
    o.wake.set()  # what the manager's REFRESH does on NspDown
    await settle()
    assert o.reports[-1] == machine.Failed("nspUnreachable") and sleeper.pending == [1.0]
    await sleeper.advance(1.0)
    await sleeper.advance(1.0)
    assert o.kinds()[-3:] == ["Failed", "Failed", "Failed"]
    nsp.down = False
    await sleeper.advance(1.0)
    assert o.kinds()[-1] == "Opened" and nsp.enabled(STREAM) == before
    assert sleeper.pending == [30.0]
    await o.stop()


async def test_no_identifier_available_is_retried_every_second_and_succeeds_when_one_frees() -> None:
    nsp, sleeper = FakeNsp(), FakeSleeper()
    for ident in range(1, 5):
        nsp.add_other(f"172.16.1.{ident + 10}/24", ident, STREAM)
    o = _Opener(nsp, sleeper)
    await settle()
    assert o.reports == [machine.Failed("noIdentifierAvailable")]
    await sleeper.advance(1.0)
    assert o.reports == [machine.Failed("noIdentifierAvailable")] * 2
    del nsp.entries[next(k for k in nsp.entries if k.startswith("172.16.1.13/24"))]
    await sleeper.advance(1.0)
    assert o.kinds()[-1] == "Opened" and nsp.enabled(STREAM)[",".join(IPS)] == "3"
    await o.stop()


class _HungRegistry(FakeNsp):
    async def register(self, target: model.Target) -> None:
        await asyncio.Event().wait()


async def test_an_open_attempt_that_hangs_fails_after_the_pending_timeout() -> None:
    sleeper = FakeSleeper()
    o = _Opener(_HungRegistry(), sleeper, opener.Timing(pending_timeout=0.01))
    await asyncio.sleep(0.05)
    assert o.reports == [machine.Failed("pendingTimeout")]
    await o.stop()


async def test_unregister_removes_our_entry_whatever_its_identifier() -> None:
    nsp = FakeNsp()
    await opener.register_new(nsp, STREAM, IPS, random.Random(0))
    await opener.unregister(nsp, STREAM, IPS)
    assert nsp.entries == {}
