"""The per-stream state machine of the TAPA (pure): statuses and opener actions."""
from __future__ import annotations

import dataclasses

import pytest

from meridio.tapa import machine
from meridio.tapa.machine import (
    Action,
    ConduitDown,
    ConduitUp,
    Defined,
    EntryLost,
    Failed,
    NspDown,
    NspUp,
    Opened,
    Phase,
    Status,
    StreamState,
    Undefined,
)

READY = StreamState(Phase.IDLE, conduit_up=True, defined=None, nsp_up=True)


def _run(state: StreamState, *events: machine.Event) -> tuple[StreamState, list[Action]]:
    actions: list[Action] = []
    for event in events:
        state, out = machine.step(state, event)
        actions += out
    return state, actions


@pytest.mark.parametrize("conduit_up, nsp_up, defined, status, actions", [
    (False, False, None, Status.UNAVAILABLE, ()),
    (False, True, True, Status.UNAVAILABLE, ()),
    (True, False, None, Status.UNAVAILABLE, ()),
    (True, True, None, Status.PENDING, ()),
    (True, True, False, Status.UNDEFINED, ()),
    (False, True, False, Status.UNDEFINED, ()),
    (True, True, True, Status.PENDING, (Action.START,)),
    (True, False, True, Status.PENDING, (Action.START,)),
], ids=["nothing-yet", "conduit-down", "nsp-down", "config-not-known", "undefined", "undefined-conduit-down",
        "defined-starts", "defined-nsp-down-still-tries"])
def test_a_newly_opened_stream_starts_in_the_status_its_facts_give(
        conduit_up: bool, nsp_up: bool, defined: bool | None, status: Status, actions: tuple[Action, ...]) -> None:
    state, out = machine.initial(conduit_up=conduit_up, nsp_up=nsp_up, defined=defined)
    assert (machine.status(state), out) == (status, actions)


def test_a_defined_stream_goes_pending_then_open_when_the_opener_succeeds() -> None:
    state, actions = _run(READY, Defined(4))
    assert (state.phase, machine.status(state), actions, state.max_targets) == (
        Phase.OPENING, Status.PENDING, [Action.START], 4)
    state, actions = _run(state, Opened())
    assert (machine.status(state), actions) == (Status.OPEN, [])


def test_a_failed_open_is_unavailable_and_recovers_when_a_retry_succeeds() -> None:
    state, _ = _run(READY, Defined(1), Failed("noIdentifierAvailable"))
    assert (machine.status(state), state.reason) == (Status.UNAVAILABLE, "noIdentifierAvailable")
    state, _ = _run(state, Failed("noIdentifierAvailable"), Opened())
    assert (machine.status(state), state.reason) == (Status.OPEN, "")


def test_a_stream_removed_from_the_configuration_is_stopped_and_undefined_and_reopens_when_it_returns() -> None:
    state, _ = _run(READY, Defined(), Opened())
    state, actions = _run(state, Undefined())
    assert (state.phase, machine.status(state), actions) == (Phase.IDLE, Status.UNDEFINED, [Action.STOP])
    state, actions = _run(state, Defined())
    assert (machine.status(state), actions) == (Status.PENDING, [Action.START])


def test_losing_the_conduit_link_stops_the_opener_and_makes_the_stream_unavailable() -> None:
    state, _ = _run(READY, Defined(), Opened())
    state, actions = _run(state, ConduitDown())
    assert (machine.status(state), actions) == (Status.UNAVAILABLE, [Action.STOP])
    state, actions = _run(state, ConduitUp())
    assert (machine.status(state), actions) == (Status.PENDING, [Action.START])


def test_an_nsp_outage_makes_an_open_stream_unavailable_and_wakes_the_opener() -> None:
    state, _ = _run(READY, Defined(), Opened())
    state, actions = _run(state, NspDown())
    assert (machine.status(state), actions) == (Status.UNAVAILABLE, [Action.REFRESH])
    # The opener keeps running (no STOP): registrations are kept, and it refreshes as soon as NSP returns.
    state, actions = _run(state, NspUp())
    assert (machine.status(state), actions) == (Status.UNAVAILABLE, [Action.REFRESH])
    state, _ = _run(state, Opened())
    assert machine.status(state) is Status.OPEN


def test_an_entry_expired_by_the_nsp_is_reopened_pending() -> None:
    state, _ = _run(READY, Defined(), Opened())
    state, actions = _run(state, EntryLost())
    assert (state.phase, machine.status(state), actions) == (Phase.OPENING, Status.PENDING, [])


def test_a_change_of_max_targets_restarts_the_opener() -> None:
    state, _ = _run(READY, Defined(2), Opened())
    state, actions = _run(state, Defined(3))
    assert (machine.status(state), actions, state.max_targets) == (Status.PENDING, [Action.STOP, Action.START], 3)


def test_the_same_definition_again_changes_nothing() -> None:
    state, _ = _run(READY, Defined(2), Opened())
    assert _run(state, Defined(2)) == (state, [])


@pytest.mark.parametrize("event", [Opened(), Failed("x"), EntryLost()], ids=["opened", "failed", "lost"])
def test_reports_from_a_stopped_opener_are_ignored(event: machine.Event) -> None:
    state, _ = _run(READY, Defined(), Opened(), ConduitDown())
    assert _run(state, event) == (state, [])


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_undefined_wins_over_every_phase(phase: Phase) -> None:
    assert machine.status(dataclasses.replace(READY, phase=phase, defined=False)) is Status.UNDEFINED
