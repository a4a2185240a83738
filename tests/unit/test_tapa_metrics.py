"""The TAPA's metric families from hand-made stream states, and the phase changes the manager counts."""
from __future__ import annotations

from typing import Any

from meridio.tapa import machine, metrics
from meridio.tapa.machine import Phase, StreamState
from meridio.tapa.manager import Manager
from meridio.tapa.refs import ConduitRef, StreamRef

A_I = StreamRef("trench-a", "conduit-a-1", "stream-a-i")
A_II = StreamRef("trench-a", "conduit-a-1", "stream-a-ii")
C1 = ConduitRef("trench-a", "conduit-a-1")
OPEN = StreamState(Phase.OPEN, conduit_up=True, defined=True, nsp_up=True)
UNDEFINED = StreamState(Phase.IDLE, conduit_up=True, defined=False, nsp_up=True)


def samples_of(fams: list[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {s.name: [(x.labels, x.value) for x in f.samples if x.name == s.name] for f in fams for s in f.samples}


def current(fams: list[Any], name: str, label: str) -> dict[str, str]:
    """stream -> the label value of its one sample at 1."""
    return {labels["stream"]: labels[label] for labels, v in samples_of(fams)[name] if v == 1}


def test_each_stream_has_one_series_per_phase_and_status_with_the_current_one_at_1() -> None:
    fams = metrics.families([(A_I, OPEN), (A_II, UNDEFINED)], {Phase.OPENING: 2, Phase.OPEN: 1})
    got = samples_of(fams)
    assert got["meridio_tapa_stream_state"][:4] == [
        ({"trench": "trench-a", "conduit": "conduit-a-1", "stream": "stream-a-i", "state": p}, v)
        for p, v in [("idle", 0), ("opening", 0), ("open", 1), ("retrying", 0)]]
    assert len(got["meridio_tapa_stream_status"]) == 2 * len(machine.Status)
    assert current(fams, "meridio_tapa_stream_state", "state") == {"stream-a-i": "open", "stream-a-ii": "idle"}
    assert current(fams, "meridio_tapa_stream_status", "status") == {"stream-a-i": "open", "stream-a-ii": "undefined"}
    assert got["meridio_tapa_streams"] == [({"state": "idle"}, 1), ({"state": "opening"}, 0),
                                           ({"state": "open"}, 1), ({"state": "retrying"}, 0)]
    assert got["meridio_tapa_stream_transitions_total"] == [({"state": "idle"}, 0), ({"state": "opening"}, 2),
                                                            ({"state": "open"}, 1), ({"state": "retrying"}, 0)]


def test_no_stream_leaves_only_the_zero_counts() -> None:
    fams = metrics.families([], {})
    assert {f.name: len(f.samples) for f in fams}["meridio_tapa_stream_state"] == 0
    got = samples_of(fams)
    assert {v for _, v in got["meridio_tapa_streams"]} == {0}


def test_the_manager_counts_the_phase_each_change_enters() -> None:
    m = Manager()
    m.open(A_I)  # stays IDLE (nothing known yet): no change
    m.nsp("trench-a", True)
    m.configuration("trench-a", {("conduit-a-1", "stream-a-i"): 10})
    m.conduit_link(C1, True)  # IDLE -> OPENING
    m.report(A_I, machine.Opened())  # -> OPEN
    m.report(A_I, machine.Opened())  # still OPEN: no change
    m.nsp("trench-a", False)  # -> RETRYING
    m.conduit_link(C1, False)  # -> IDLE
    assert {p.value: n for p, n in m.transitions.items()} == {"idle": 1, "opening": 1, "open": 1, "retrying": 1}
    assert [(ref, state.phase) for ref, state in m.streams()] == [(A_I, Phase.IDLE)]
