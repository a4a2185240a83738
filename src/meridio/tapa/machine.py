"""The state of one opened stream, as a pure state machine (reference §1.2).

A stream the application asked to open is in one :class:`Phase` of its *opener* (the task that
registers the target in the NSP and keeps the entry fresh) and carries the facts the opener depends on:
is the conduit's link connected, is the stream defined in the NSP configuration (and with which
max-targets), is the NSP reachable. :func:`step` takes one :data:`Event` and returns the next state and
the :class:`Action` the caller must carry out. :func:`status` is what Watch reports:

============  ============================================================  =============
phase         meaning                                                        status
============  ============================================================  =============
IDLE          no opener (conduit down, config not known, or undefined)       UNAVAILABLE if the conduit or the
                                                                             NSP is down, UNDEFINED if the stream
                                                                             is not configured, else PENDING
OPENING       the opener is registering (identifier allocation)              PENDING
OPEN          registered ENABLED and refreshed                               OPEN
RETRYING      the last open or refresh failed (NSP down, no identifier...)   UNAVAILABLE
============  ============================================================  =============

A stream not defined in the configuration is UNDEFINED whatever the phase (Meridio: closed + UNDEFINED).
"""
from __future__ import annotations

import dataclasses
import enum

__all__ = ["Status", "Phase", "Action", "StreamState", "ConduitUp", "ConduitDown", "Defined", "Undefined",
           "NspUp", "NspDown", "Opened", "Failed", "EntryLost", "Event", "step", "status", "initial"]


class Status(enum.IntEnum):
    """``ambassador.v1.StreamStatus.Status`` (same numbers)."""

    OPEN = 0
    PENDING = 1
    UNAVAILABLE = 2
    UNDEFINED = 3


class Phase(enum.Enum):
    IDLE = "idle"
    OPENING = "opening"
    OPEN = "open"
    RETRYING = "retrying"


class Action(enum.Enum):
    START = "start"      # start the opener
    STOP = "stop"        # stop the opener and unregister the target
    REFRESH = "refresh"  # wake the opener: refresh (or retry) now instead of at the next timer


@dataclasses.dataclass(frozen=True)
class StreamState:
    phase: Phase = Phase.IDLE
    conduit_up: bool = False
    defined: bool | None = None
    """``None`` until the NSP configuration of the trench has been received."""
    max_targets: int = 0
    nsp_up: bool = False
    reason: str = ""
    """Why the last open or refresh failed (for logs and tests)."""

    @property
    def wanted(self) -> bool:
        """Whether an opener should run: conduit connected and the stream configured."""
        return self.conduit_up and self.defined is True


# Fact events: what the opener depends on.
@dataclasses.dataclass(frozen=True)
class ConduitUp:
    pass


@dataclasses.dataclass(frozen=True)
class ConduitDown:
    pass


@dataclasses.dataclass(frozen=True)
class Defined:
    max_targets: int = 0


@dataclasses.dataclass(frozen=True)
class Undefined:
    pass


@dataclasses.dataclass(frozen=True)
class NspUp:
    pass


@dataclasses.dataclass(frozen=True)
class NspDown:
    pass


# Opener events: what the opener reports.
@dataclasses.dataclass(frozen=True)
class Opened:
    pass


@dataclasses.dataclass(frozen=True)
class Failed:
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class EntryLost:
    pass


Event = ConduitUp | ConduitDown | Defined | Undefined | NspUp | NspDown | Opened | Failed | EntryLost

# Opener reports, by phase. A report that arrives while IDLE is stale (the opener was stopped) and
# ignored; a pair missing here leaves the phase unchanged.
_REPORTS: dict[tuple[Phase, type], Phase] = {
    (Phase.OPENING, Opened): Phase.OPEN,
    (Phase.RETRYING, Opened): Phase.OPEN,
    (Phase.OPENING, Failed): Phase.RETRYING,
    (Phase.OPEN, Failed): Phase.RETRYING,
    (Phase.OPEN, EntryLost): Phase.OPENING,
    (Phase.RETRYING, EntryLost): Phase.OPENING,
}


def initial(*, conduit_up: bool, nsp_up: bool, defined: bool | None, max_targets: int = 0
            ) -> tuple[StreamState, tuple[Action, ...]]:
    """The state of a stream just opened by the application, and whether to start its opener."""
    return _reconcile(StreamState(Phase.IDLE, conduit_up, defined, max_targets, nsp_up), restart=False)


def step(state: StreamState, event: Event) -> tuple[StreamState, tuple[Action, ...]]:
    """Apply ``event`` to ``state``; return the next state and the actions to carry out, in order."""
    if isinstance(event, (Opened, Failed, EntryLost)):
        return _report(state, event)
    if isinstance(event, NspDown):
        return _nsp_down(state)
    if isinstance(event, NspUp):
        was_down = not state.nsp_up
        state = dataclasses.replace(state, nsp_up=True)
        running = state.phase in (Phase.OPEN, Phase.RETRYING)
        return state, ((Action.REFRESH,) if was_down and running else ())
    restart = False
    if isinstance(event, ConduitUp):
        state = dataclasses.replace(state, conduit_up=True)
    elif isinstance(event, ConduitDown):
        state = dataclasses.replace(state, conduit_up=False)
    elif isinstance(event, Defined):
        restart = state.defined is True and event.max_targets != state.max_targets
        state = dataclasses.replace(state, defined=True, max_targets=event.max_targets)
    elif isinstance(event, Undefined):
        state = dataclasses.replace(state, defined=False)
    return _reconcile(state, restart=restart)


def _report(state: StreamState, event: Opened | Failed | EntryLost) -> tuple[StreamState, tuple[Action, ...]]:
    if state.phase is Phase.IDLE:
        return state, ()
    phase = _REPORTS.get((state.phase, type(event)), state.phase)
    reason = event.reason if isinstance(event, Failed) else ("" if isinstance(event, Opened) else state.reason)
    return dataclasses.replace(state, phase=phase, reason=reason), ()


def _nsp_down(state: StreamState) -> tuple[StreamState, tuple[Action, ...]]:
    # Why REFRESH: the opener should find out now (its refresh fails and it starts retrying every
    # second) rather than at the next keepalive, so the application sees UNAVAILABLE promptly.
    state = dataclasses.replace(state, nsp_up=False)
    if state.phase is Phase.OPEN:
        return dataclasses.replace(state, phase=Phase.RETRYING, reason="nspUnreachable"), (Action.REFRESH,)
    return state, ()


def _reconcile(state: StreamState, *, restart: bool) -> tuple[StreamState, tuple[Action, ...]]:
    running = state.phase is not Phase.IDLE
    if state.wanted and not running:
        return dataclasses.replace(state, phase=Phase.OPENING, reason=""), (Action.START,)
    if not state.wanted and running:
        return dataclasses.replace(state, phase=Phase.IDLE), (Action.STOP,)
    if restart and running:
        return dataclasses.replace(state, phase=Phase.OPENING, reason=""), (Action.STOP, Action.START)
    return state, ()


def status(state: StreamState) -> Status:
    """What Watch reports for ``state``."""
    if state.defined is False:
        return Status.UNDEFINED
    if state.phase is Phase.OPEN:
        return Status.OPEN
    if state.phase is Phase.OPENING:
        return Status.PENDING
    if state.phase is Phase.RETRYING:
        return Status.UNAVAILABLE
    if not state.conduit_up or not state.nsp_up:
        return Status.UNAVAILABLE
    return Status.PENDING
