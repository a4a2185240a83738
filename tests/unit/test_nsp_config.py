"""ConfigurationManager core: what each watch kind selects, and per-watcher dedupe of changes."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from meridio.api import model as m
from meridio.nsp import config, watchers
from meridio.nsp.config import Kind

TA = m.Trench("trench-a")
C1, C2 = m.Conduit("conduit-a-1", TA), m.Conduit("conduit-a-2", TA)
S1, S2 = m.Stream("stream-a-i", C1, 100), m.Stream("stream-a-ii", C2, 100)
V1 = m.Vip("vip-a-1-v4", "203.0.113.1/32", TA)
V2 = m.Vip("vip-a-2-v4", "203.0.113.2/32", TA)
F1 = m.Flow("flow-a-z-tcp", S1, 1, ("tcp",), ("0.0.0.0/0",), ("0-65535",), ("4000",), (V1,))
F2 = m.Flow("flow-b-z-tcp", S2, 1, ("tcp",), ("0.0.0.0/0",), ("0-65535",), ("4000",), (V2,))
G1 = m.Gateway("gateway-v4-a-1", "169.254.100.150", "ipv4", trench=TA)
A1 = m.Attractor("attractor-a-1", TA, (V1, V2), (G1,))
CONFIG = m.Configuration(TA, (C1, C2), (S1, S2), (F1, F2), (V1, V2), (A1,), (G1,))


@pytest.mark.parametrize("kind, flt, expected", [
    pytest.param(Kind.TRENCH, m.Trench(""), TA, id="trench with empty filter"),
    pytest.param(Kind.TRENCH, m.Trench("trench-b"), None, id="trench of another name is None"),
    pytest.param(Kind.CONDUIT, m.Conduit("", TA), (C1, C2), id="conduits of the trench"),
    pytest.param(Kind.CONDUIT, m.Conduit("conduit-a-2"), (C2,), id="one conduit by name"),
    pytest.param(Kind.STREAM, m.Stream("", C1), (S1,), id="streams of a conduit"),
    pytest.param(Kind.STREAM, None, (S1, S2), id="every stream"),
    pytest.param(Kind.FLOW, m.Flow("", m.Stream("stream-a-ii")), (F2,), id="flows of a stream"),
    pytest.param(Kind.FLOW, m.Flow("", m.Stream("", m.Conduit("conduit-a-1"))), (F1,), id="flows of a conduit"),
    pytest.param(Kind.VIP, m.Vip("", "", TA), (V1, V2), id="vips of the trench"),
    pytest.param(Kind.ATTRACTOR, m.Attractor("attractor-a-1", TA), (A1,), id="an attractor by name"),
    pytest.param(Kind.GATEWAY, m.Gateway("", "", trench=m.Trench("trench-b")), (), id="gateways of another trench"),
])
def test_select_returns_the_filtered_objects_of_each_kind(kind: Kind, flt: object, expected: object) -> None:
    assert config.select(CONFIG, kind, flt) == expected


def test_watch_trench_gets_none_when_no_trench_is_configured() -> None:
    assert config.select(m.Configuration(), Kind.TRENCH, m.Trench("")) is None


def test_a_new_watcher_gets_its_current_view_immediately_even_if_empty() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.CONDUIT, m.Conduit("nope"))
    assert box.take() == ()


def test_a_change_reaches_only_the_watchers_whose_view_changed() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    streams_c1 = mgr.subscribe(Kind.STREAM, m.Stream("", C1))
    streams_c2 = mgr.subscribe(Kind.STREAM, m.Stream("", C2))
    vips = mgr.subscribe(Kind.VIP, m.Vip("", "", TA))
    for box in (streams_c1, streams_c2, vips):
        box.take()
    s2_bigger = dataclasses.replace(S2, max_targets=200)
    notified = mgr.update(dataclasses.replace(CONFIG, streams=(S1, s2_bigger)))
    assert notified == 1
    assert streams_c1.take() is None
    assert vips.take() is None
    assert streams_c2.take() == (s2_bigger,)


def test_an_identical_configuration_notifies_nobody() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.FLOW, None)
    box.take()
    assert mgr.update(dataclasses.replace(CONFIG)) == 0
    assert box.take() is None


def test_a_change_reverted_before_delivery_sends_nothing() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.VIP, None)
    box.take()
    mgr.update(dataclasses.replace(CONFIG, vips=(V1,)))
    mgr.update(CONFIG)
    assert box.take() is None


def test_a_slow_watcher_gets_only_the_newest_view() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.VIP, None)
    box.take()
    mgr.update(dataclasses.replace(CONFIG, vips=(V1,)))
    mgr.update(dataclasses.replace(CONFIG, vips=()))
    assert box.take() == ()
    assert box.take() is None


def test_unsubscribed_watchers_are_not_notified_and_their_mailbox_is_closed() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.VIP, None)
    mgr.unsubscribe(box)
    assert mgr.update(m.Configuration()) == 0
    assert box.closed and mgr.watcher_count == 0


async def test_mailbox_get_waits_for_a_value_and_raises_closed_after_close() -> None:
    box: watchers.Mailbox[int] = watchers.Mailbox()
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not getter.done()
    box.offer(7)
    assert await asyncio.wait_for(getter, 1) == 7
    box.close()
    with pytest.raises(watchers.Closed):
        await asyncio.wait_for(box.get(), 1)


async def test_closing_the_manager_ends_every_watcher() -> None:
    mgr = config.ConfigurationManager(CONFIG)
    box = mgr.subscribe(Kind.TRENCH, None)
    assert await box.get() == TA
    waiting = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    mgr.close()
    with pytest.raises(watchers.Closed):
        await asyncio.wait_for(waiting, 1)
