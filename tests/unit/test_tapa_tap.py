"""The TAPA's asyncio owner (tap.Tap) wired to FAKE NSP sessions and links (tapa_fakes) and a fake timer."""
from __future__ import annotations

import asyncio
import random

import pytest

from meridio.api import model
from meridio.api.link import Link
from meridio.common.retry import TemporaryError
from meridio.tapa import machine, opener
from meridio.tapa.manager import AnotherTrench
from meridio.tapa.refs import ConduitRef, Filter, StreamRef
from meridio.tapa.tap import Tap, TapOptions
from tests.unit.tapa_fakes import FakeLink, FakeNsp, FakeSleeper, settle

A_I = StreamRef("trench-a", "conduit-a-1", "stream-a-i")
A_II = StreamRef("trench-a", "conduit-a-1", "stream-a-ii")
A_IV = StreamRef("trench-a", "conduit-a-2", "stream-a-iv")
B_I = StreamRef("trench-b", "conduit-b-1", "stream-b-i")
S = machine.Status


def _streams(*refs: StreamRef, max_targets: int = 100) -> list[model.Stream]:
    return [r.to_model(max_targets) for r in refs]


class Harness:
    """One TAPA (target ``name``) with fakes around it."""

    def __init__(self, nsp: FakeNsp, name: str = "target-1", ip: str = "172.16.1.6/24",
                 sleeper: FakeSleeper | None = None, interfaces: set[str] | None = None) -> None:
        self.nsp = nsp
        self.sleeper = sleeper or FakeSleeper()
        self.events: list[str] = []
        self.links: dict[ConduitRef, FakeLink] = {}
        self.ip = ip
        self.tap = Tap(trench_factory=nsp.session, link_factory=self._link,
                       options=TapOptions(timing=opener.Timing(30.0, 15.0, 1.0)), sleeper=self.sleeper,
                       rng=random.Random(name), interfaces=lambda: set(interfaces or ()))
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _link(self, conduit: ConduitRef) -> FakeLink:
        link = self.links.get(conduit) or FakeLink(conduit, (self.ip,), self.events)
        self.links[conduit] = link
        return link

    async def __aenter__(self) -> Harness:
        self.task = asyncio.ensure_future(self.tap.run(self.stop))
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)

    def status(self) -> dict[str, S]:
        return {s.ref.full_name: s.status for s in self.tap.statuses()}


async def test_an_opened_stream_goes_from_unavailable_to_open_and_registers_the_link_addresses() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.links[A_I.conduit_ref] = FakeLink(A_I.conduit_ref, ("172.16.1.6/24", "fd00:0:0:1::6/64"), h.events)
        h.links[A_I.conduit_ref].fail = True
        h.tap.open(A_I)
        await settle()
        assert h.status() == {A_I.full_name: S.UNAVAILABLE}
        h.links[A_I.conduit_ref].fail = False
        await h.sleeper.advance(2.0)
        assert h.status() == {A_I.full_name: S.OPEN}
        assert list(nsp.enabled(A_I.to_model())) == ["172.16.1.6/24,fd00:0:0:1::6/64"]
        assert h.events == ["connect conduit-a-1 nsm-0"]


async def test_watch_sends_the_current_list_and_then_every_change_of_the_matching_streams() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, A_IV))
    async with Harness(nsp) as h:
        seen: list[list[tuple[str, S]]] = []

        async def watch() -> None:
            async for statuses in h.tap.watch(Filter(conduit="conduit-a-1")):
                seen.append([(s.ref.stream, s.status) for s in statuses])

        watcher = asyncio.ensure_future(watch())
        await settle()
        h.tap.open(A_I)
        await settle()
        h.tap.open(A_IV)  # another conduit: not matching, sends nothing new
        await settle()
        assert seen[0] == [] and seen[-1] == [("stream-a-i", S.OPEN)]
        assert all(len(update) <= 1 for update in seen)
        assert seen.count([("stream-a-i", S.OPEN)]) == 1
        h.tap.close(A_I)
        await settle()
        assert seen[-1] == []
    await asyncio.wait_for(watcher, 1)  # watches end when the TAPA stops


async def test_close_unregisters_then_disconnects_the_link_then_drops_the_nsp_session() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        h.tap.close(A_I)
        assert h.status() == {}
        await settle()
        assert nsp.entries == {}
        assert h.events == ["connect conduit-a-1 nsm-0", "disconnect conduit-a-1"]
        assert nsp.calls[-1] == "unregister" and nsp.sessions_closed == 1


async def test_close_then_open_again_unregisters_before_registering_again() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        h.tap.close(A_I)
        h.tap.open(A_I)
        await settle(40)
        assert h.status() == {A_I.full_name: S.OPEN}
        assert nsp.enabled(A_I.to_model()) != {}
        assert h.events == ["connect conduit-a-1 nsm-0", "disconnect conduit-a-1", "connect conduit-a-1 nsm-0"]


async def test_reopening_a_stream_while_its_conduit_stays_linked_unregisters_before_registering_again() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, A_II))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        h.tap.open(A_II)
        await settle()
        h.tap.close(A_I)
        h.tap.open(A_I)
        await settle(40)
        assert h.status() == {A_I.full_name: S.OPEN, A_II.full_name: S.OPEN}
        assert list(nsp.enabled(A_I.to_model())) == ["172.16.1.6/24"]
        assert h.events == ["connect conduit-a-1 nsm-0"]


async def test_a_second_trench_is_refused_until_the_first_is_closed() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, B_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        with pytest.raises(AnotherTrench):
            h.tap.open(B_I)
        h.tap.close(A_I)
        h.tap.open(B_I)
        await settle(40)
        assert h.status() == {B_I.full_name: S.OPEN}
        assert nsp.enabled(A_I.to_model()) == {} and nsp.enabled(B_I.to_model()) != {}


async def test_two_conduits_get_two_interfaces_skipping_names_already_in_the_namespace() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, A_IV))
    async with Harness(nsp, interfaces={"lo", "nsm-0"}) as h:
        h.tap.open(A_I)
        h.tap.open(A_IV)
        await settle()
        assert h.events == ["connect conduit-a-1 nsm-1", "connect conduit-a-2 nsm-2"]
        assert h.status() == {A_I.full_name: S.OPEN, A_IV.full_name: S.OPEN}


async def test_max_targets_one_leaves_the_second_target_unavailable_until_the_first_closes() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, max_targets=1))
    sleeper = FakeSleeper()
    async with Harness(nsp, "target-1", "172.16.1.6/24", sleeper) as first, \
            Harness(nsp, "target-2", "172.16.1.7/24", sleeper) as second:
        first.tap.open(A_I)
        await settle()
        second.tap.open(A_I)
        await settle()
        assert first.status() == {A_I.full_name: S.OPEN}
        assert second.status() == {A_I.full_name: S.UNAVAILABLE}
        assert second.tap.state(A_I).reason == "noIdentifierAvailable"  # type: ignore[union-attr]
        first.tap.close(A_I)
        await settle()
        await sleeper.advance(1.0)
        assert second.status() == {A_I.full_name: S.OPEN}
        assert nsp.enabled(A_I.to_model()) == {"172.16.1.7/24": "1"}


async def test_an_nsp_outage_shows_unavailable_and_recovers_with_the_same_identifier() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        before = nsp.enabled(A_I.to_model())
        nsp.set_down(True)
        await settle()
        assert h.status() == {A_I.full_name: S.UNAVAILABLE}
        await h.sleeper.advance(1.0)
        nsp.set_down(False)
        await settle()
        assert h.status() == {A_I.full_name: S.OPEN}
        assert nsp.enabled(A_I.to_model()) == before


async def test_an_nsp_that_lost_its_registry_gets_the_target_registered_again() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        nsp.set_down(True)
        await settle()
        nsp.expire_all()
        nsp.set_down(False)
        await settle()
        assert h.status() == {A_I.full_name: S.OPEN}
        assert list(nsp.enabled(A_I.to_model())) == ["172.16.1.6/24"]


async def test_a_stream_removed_from_the_configuration_is_unregistered_and_undefined_then_reopens() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, A_II))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        nsp.set_streams(_streams(A_II))
        await settle()
        assert h.status() == {A_I.full_name: S.UNDEFINED}
        assert nsp.enabled(A_I.to_model()) == {}
        nsp.set_streams(_streams(A_I, A_II))
        await settle()
        assert h.status() == {A_I.full_name: S.OPEN}


async def test_new_link_addresses_move_the_registration_to_the_new_addresses() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        await h.links[A_I.conduit_ref].updates.put(Link(target_id="", interface_name="nsm-0", addresses=("172.16.1.9/24",)))
        await settle(40)
        assert list(nsp.enabled(A_I.to_model())) == ["172.16.1.9/24"]
        assert len(nsp.entries) == 1 and h.status() == {A_I.full_name: S.OPEN}


async def test_a_link_the_proxy_no_longer_has_is_connected_again() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        await h.links[A_I.conduit_ref].updates.put(None)
        await settle()
        assert h.status() == {A_I.full_name: S.UNAVAILABLE} and nsp.entries == {}
        await h.sleeper.advance(2.0)
        assert h.status() == {A_I.full_name: S.OPEN}
        assert h.events == ["connect conduit-a-1 nsm-0", "connect conduit-a-1 nsm-0"]


async def test_stopping_the_tap_unregisters_and_disconnects_everything() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I, A_IV))
    h = Harness(nsp)
    async with h:
        h.tap.open(A_I)
        h.tap.open(A_IV)
        await settle()
        assert len(nsp.enabled(A_I.to_model()) | nsp.enabled(A_IV.to_model())) == 1
    assert nsp.entries == {} and nsp.sessions_closed == 1
    assert sorted(h.events[-2:]) == ["disconnect conduit-a-1", "disconnect conduit-a-2"]
    with pytest.raises(TemporaryError):
        h.tap.open(A_I)


async def test_stopping_with_the_nsp_down_gives_up_unregistering_after_the_teardown_timeout() -> None:
    nsp = FakeNsp()
    nsp.set_streams(_streams(A_I))
    async with Harness(nsp) as h:
        h.tap.open(A_I)
        await settle()
        nsp.set_down(True)
        await settle()
    assert len(nsp.entries) == 1  # left for the NSP keepalive to expire
    assert h.events[-1] == "disconnect conduit-a-1"
