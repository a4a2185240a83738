"""The TAPA's trench/conduit/stream bookkeeping (pure): commands and statuses."""
from __future__ import annotations

import pytest

from meridio.tapa import machine
from meridio.tapa.manager import (
    AnotherTrench,
    ConnectConduit,
    ConnectTrench,
    DisconnectConduit,
    DisconnectTrench,
    Manager,
    RefreshStream,
    StartStream,
    StopStream,
    StreamStatus,
)
from meridio.tapa.refs import ConduitRef, Filter, StreamRef

A_I = StreamRef("trench-a", "conduit-a-1", "stream-a-i")
A_II = StreamRef("trench-a", "conduit-a-1", "stream-a-ii")
A_IV = StreamRef("trench-a", "conduit-a-2", "stream-a-iv")
B_I = StreamRef("trench-b", "conduit-b-1", "stream-b-i")
C1 = ConduitRef("trench-a", "conduit-a-1")
C2 = ConduitRef("trench-a", "conduit-a-2")
CONFIG = {("conduit-a-1", "stream-a-i"): 100, ("conduit-a-1", "stream-a-ii"): 1, ("conduit-a-2", "stream-a-iv"): 0}


def _ready(m: Manager, *conduits: ConduitRef) -> list:  # type: ignore[type-arg]
    out = m.nsp("trench-a", True) + m.configuration("trench-a", CONFIG)
    for c in conduits:
        out += m.conduit_link(c, True)
    return out


def _status(m: Manager, ref: StreamRef) -> machine.Status:
    return {s.ref: s.status for s in m.statuses()}[ref]


def test_the_first_open_connects_the_trench_and_the_conduit_and_the_stream_is_unavailable_until_linked() -> None:
    m = Manager()
    assert m.open(A_I) == [ConnectTrench("trench-a"), ConnectConduit(C1)]
    assert _status(m, A_I) is machine.Status.UNAVAILABLE


def test_the_opener_starts_once_the_link_is_up_and_the_stream_is_configured() -> None:
    m = Manager()
    m.open(A_I)
    assert m.nsp("trench-a", True) == []
    assert m.configuration("trench-a", CONFIG) == []
    assert m.conduit_link(C1, True) == [StartStream(A_I, 100)]
    assert _status(m, A_I) is machine.Status.PENDING
    assert m.report(A_I, machine.Opened()) == []
    assert m.statuses() == [StreamStatus(A_I, machine.Status.OPEN)]


def test_a_stream_not_in_the_configuration_is_undefined() -> None:
    m = Manager()
    unknown = StreamRef("trench-a", "conduit-a-1", "nope")
    m.open(unknown)
    _ready(m, C1)
    assert _status(m, unknown) is machine.Status.UNDEFINED


def test_a_stream_of_an_unknown_conduit_is_undefined_even_before_its_link_connects() -> None:
    m = Manager()
    unknown = StreamRef("trench-a", "conduit-x", "stream-a-i")
    m.open(unknown)
    _ready(m)
    assert _status(m, unknown) is machine.Status.UNDEFINED


def test_a_second_trench_is_refused_while_the_first_has_streams() -> None:
    m = Manager()
    m.open(A_I)
    with pytest.raises(AnotherTrench, match="^another trench is already connected$"):
        m.open(B_I)
    assert m.trench == "trench-a"


def test_closing_the_last_stream_frees_the_trench_for_another_one() -> None:
    m = Manager()
    m.open(A_I)
    _ready(m, C1)
    m.report(A_I, machine.Opened())
    assert m.close(A_I) == [StopStream(A_I), DisconnectConduit(C1), DisconnectTrench("trench-a")]
    assert m.open(B_I) == [ConnectTrench("trench-b"), ConnectConduit(ConduitRef("trench-b", "conduit-b-1"))]


def test_two_streams_of_one_conduit_share_its_link_and_closing_one_keeps_it() -> None:
    m = Manager()
    m.open(A_I)
    _ready(m, C1)
    assert m.open(A_II) == [StartStream(A_II, 1)]
    assert m.close(A_I) == [StopStream(A_I)]
    assert m.conduits() == [C1]


def test_two_conduits_have_their_own_links() -> None:
    m = Manager()
    m.open(A_I)
    _ready(m, C1)
    assert m.open(A_IV) == [ConnectConduit(C2)]
    assert m.conduit_link(C2, True) == [StartStream(A_IV, 0)]
    assert m.close(A_IV) == [StopStream(A_IV), DisconnectConduit(C2)]


def test_opening_an_open_stream_again_does_nothing() -> None:
    m = Manager()
    m.open(A_I)
    _ready(m, C1)
    assert m.open(A_I) == []


def test_closing_a_stream_that_is_not_open_does_nothing() -> None:
    m = Manager()
    assert m.close(A_I) == []
    m.open(A_I)
    assert m.close(A_II) == []
    assert m.close(B_I) == []


def test_closing_a_stream_whose_opener_never_started_needs_no_unregister() -> None:
    m = Manager()
    m.open(A_I)
    assert m.close(A_I) == [DisconnectConduit(C1), DisconnectTrench("trench-a")]


def test_removal_from_the_configuration_stops_the_stream_and_its_return_restarts_it() -> None:
    m = Manager()
    m.open(A_I)
    _ready(m, C1)
    assert m.configuration("trench-a", {}) == [StopStream(A_I)]
    assert _status(m, A_I) is machine.Status.UNDEFINED
    assert m.configuration("trench-a", CONFIG) == [StartStream(A_I, 100)]


def test_nsp_outage_wakes_the_openers_of_open_streams() -> None:
    m = Manager()
    m.open(A_I)
    m.open(A_II)
    _ready(m, C1)
    m.report(A_I, machine.Opened())
    assert m.nsp("trench-a", False) == [RefreshStream(A_I)]
    assert _status(m, A_I) is machine.Status.UNAVAILABLE
    assert m.nsp("trench-a", True) == [RefreshStream(A_I)]


def test_losing_the_link_stops_only_that_conduits_streams() -> None:
    m = Manager()
    m.open(A_I)
    m.open(A_IV)
    _ready(m, C1, C2)
    assert m.conduit_link(C2, False) == [StopStream(A_IV)]
    assert _status(m, A_I) is machine.Status.PENDING


def test_reports_for_closed_streams_and_inputs_for_other_trenches_are_ignored() -> None:
    m = Manager()
    m.open(A_I)
    assert m.report(A_II, machine.Opened()) == []
    assert m.configuration("trench-b", {}) == []
    assert m.nsp("trench-b", True) == []
    assert m.conduit_link(ConduitRef("trench-b", "conduit-a-1"), True) == []


def test_statuses_are_sorted_and_filtered_with_wildcards() -> None:
    m = Manager()
    for ref in (A_IV, A_II, A_I):
        m.open(ref)
    assert [s.ref for s in m.statuses()] == [A_I, A_II, A_IV]
    assert [s.ref for s in m.statuses(Filter(conduit="conduit-a-1"))] == [A_I, A_II]
    assert [s.ref for s in m.statuses(Filter(stream="stream-a-iv"))] == [A_IV]
    assert m.statuses(Filter(trench="trench-b")) == []


def test_close_all_closes_every_stream_and_the_trench() -> None:
    m = Manager()
    m.open(A_I)
    m.open(A_IV)
    _ready(m, C1, C2)
    commands = m.close_all()
    assert commands == [StopStream(A_I), DisconnectConduit(C1), StopStream(A_IV), DisconnectConduit(C2),
                        DisconnectTrench("trench-a")]
    assert m.trench is None and m.statuses() == []
