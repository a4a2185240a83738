"""The TAPA's bookkeeping: one trench, its conduits, their streams (pure; no I/O, no time).

The asyncio owner (:mod:`meridio.tapa.tap`) calls one method per input — an application's Open or
Close, the conduit's link connected or lost, the trench's NSP configuration, NSP reachability, a report
from a stream's opener — and carries out the returned :data:`Command` list in order. The rules
(reference §1.2): a target is in at most one trench at a time ("another trench is already connected"),
with any number of conduits and streams in it; the first stream of a trench connects the NSP, the first
stream of a conduit connects its link; Close of the last stream of a conduit disconnects the link, of
the last conduit drops the NSP connection.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from meridio.tapa import machine
from meridio.tapa.refs import ConduitRef, Filter, InvalidRequest, StreamRef

__all__ = ["AnotherTrench", "ConnectTrench", "DisconnectTrench", "ConnectConduit", "DisconnectConduit",
           "StartStream", "StopStream", "RefreshStream", "Command", "StreamStatus", "Manager"]


class AnotherTrench(InvalidRequest):
    def __init__(self) -> None:
        super().__init__("another trench is already connected")


@dataclasses.dataclass(frozen=True)
class ConnectTrench:
    trench: str


@dataclasses.dataclass(frozen=True)
class DisconnectTrench:
    trench: str


@dataclasses.dataclass(frozen=True)
class ConnectConduit:
    conduit: ConduitRef


@dataclasses.dataclass(frozen=True)
class DisconnectConduit:
    conduit: ConduitRef


@dataclasses.dataclass(frozen=True)
class StartStream:
    ref: StreamRef
    max_targets: int


@dataclasses.dataclass(frozen=True)
class StopStream:
    ref: StreamRef


@dataclasses.dataclass(frozen=True)
class RefreshStream:
    ref: StreamRef


Command = (ConnectTrench | DisconnectTrench | ConnectConduit | DisconnectConduit | StartStream | StopStream
           | RefreshStream)


@dataclasses.dataclass(frozen=True, order=True)
class StreamStatus:
    ref: StreamRef
    status: machine.Status


@dataclasses.dataclass
class _Conduit:
    connected: bool = False
    streams: dict[str, machine.StreamState] = dataclasses.field(default_factory=dict)


class Manager:
    """One trench at a time; commands out, no side effects."""

    def __init__(self) -> None:
        self.trench: str | None = None
        self.nsp_up = False
        self._conduits: dict[str, _Conduit] = {}
        self._config: dict[tuple[str, str], int] | None = None  # (conduit, stream) -> max-targets
        self.transitions: dict[machine.Phase, int] = dict.fromkeys(machine.Phase, 0)
        """Phase changes of every stream since start, by the phase entered (a new stream starts IDLE)."""

    # --- inputs -----------------------------------------------------------------------------

    def open(self, ref: StreamRef) -> list[Command]:
        """The application opens ``ref``; raises :class:`AnotherTrench` if another trench is in use."""
        if self.trench is not None and ref.trench != self.trench:
            raise AnotherTrench()
        commands: list[Command] = []
        if self.trench is None:
            self.trench, self.nsp_up, self._config = ref.trench, False, None
            commands.append(ConnectTrench(ref.trench))
        conduit = self._conduits.get(ref.conduit)
        if conduit is None:
            conduit = self._conduits[ref.conduit] = _Conduit()
            commands.append(ConnectConduit(ref.conduit_ref))
        if ref.stream in conduit.streams:
            return commands  # already open: Open is idempotent
        defined, max_targets = self._definition(ref)
        state, actions = machine.initial(conduit_up=conduit.connected, nsp_up=self.nsp_up, defined=defined,
                                         max_targets=max_targets)
        self._count(machine.Phase.IDLE, state.phase)
        conduit.streams[ref.stream] = state
        return commands + self._commands(ref, state, actions)

    def close(self, ref: StreamRef) -> list[Command]:
        """The application closes ``ref`` (nothing happens if it is not open)."""
        conduit = self._conduits.get(ref.conduit) if ref.trench == self.trench else None
        if conduit is None or ref.stream not in conduit.streams:
            return []
        state = conduit.streams.pop(ref.stream)
        commands: list[Command] = [StopStream(ref)] if state.phase is not machine.Phase.IDLE else []
        if not conduit.streams:
            del self._conduits[ref.conduit]
            commands.append(DisconnectConduit(ref.conduit_ref))
        if not self._conduits and self.trench is not None:
            commands.append(DisconnectTrench(self.trench))
            self.trench, self.nsp_up, self._config = None, False, None
        return commands

    def close_all(self) -> list[Command]:
        """Close every stream (shutdown)."""
        commands: list[Command] = []
        for ref in self.refs():
            commands += self.close(ref)
        return commands

    def conduit_link(self, conduit: ConduitRef, connected: bool) -> list[Command]:
        """The conduit's link to the proxy is connected (``True``) or lost."""
        entry = self._entry(conduit)
        if entry is None or entry.connected == connected:
            return []
        entry.connected = connected
        event: machine.Event = machine.ConduitUp() if connected else machine.ConduitDown()
        return self._broadcast(conduit.conduit, event)

    def configuration(self, trench: str, streams: Mapping[tuple[str, str], int]) -> list[Command]:
        """The NSP's streams of ``trench``: (conduit, stream) -> max-targets."""
        if trench != self.trench:
            return []
        self._config = dict(streams)
        commands: list[Command] = []
        for ref in self.refs():
            defined, max_targets = self._definition(ref)
            event: machine.Event = machine.Defined(max_targets) if defined else machine.Undefined()
            commands += self._apply(ref, event)
        return commands

    def nsp(self, trench: str, up: bool) -> list[Command]:
        """Reachability of the trench's NSP changed."""
        if trench != self.trench or up == self.nsp_up:
            return []
        self.nsp_up = up
        commands: list[Command] = []
        for ref in self.refs():
            commands += self._apply(ref, machine.NspUp() if up else machine.NspDown())
        return commands

    def report(self, ref: StreamRef, event: machine.Opened | machine.Failed | machine.EntryLost) -> list[Command]:
        """A stream's opener reports; reports for streams no longer open are ignored."""
        if self._state(ref) is None:
            return []
        return self._apply(ref, event)

    # --- outputs ----------------------------------------------------------------------------

    def refs(self) -> list[StreamRef]:
        if self.trench is None:
            return []
        return sorted(StreamRef(self.trench, c, s) for c, entry in self._conduits.items() for s in entry.streams)

    def state(self, ref: StreamRef) -> machine.StreamState | None:
        return self._state(ref)

    def streams(self) -> list[tuple[StreamRef, machine.StreamState]]:
        """Every open stream and its state, sorted by trench, conduit, stream."""
        out = []
        for ref in self.refs():
            state = self._state(ref)
            if state is not None:
                out.append((ref, state))
        return out

    def statuses(self, filt: Filter | None = None) -> list[StreamStatus]:
        """Every open stream matching ``filt``, sorted by trench, conduit, stream."""
        out = []
        for ref in self.refs():
            state = self._state(ref)
            if state is not None and (filt is None or filt.matches(ref)):
                out.append(StreamStatus(ref, machine.status(state)))
        return out

    def conduits(self) -> list[ConduitRef]:
        return [ConduitRef(self.trench, c) for c in self._conduits] if self.trench else []

    # --- internals --------------------------------------------------------------------------

    def _definition(self, ref: StreamRef) -> tuple[bool | None, int]:
        if self._config is None:
            return None, 0
        key = (ref.conduit, ref.stream)
        return (True, self._config[key]) if key in self._config else (False, 0)

    def _entry(self, conduit: ConduitRef) -> _Conduit | None:
        return self._conduits.get(conduit.conduit) if conduit.trench == self.trench else None

    def _state(self, ref: StreamRef) -> machine.StreamState | None:
        entry = self._conduits.get(ref.conduit) if ref.trench == self.trench else None
        return entry.streams.get(ref.stream) if entry is not None else None

    def _broadcast(self, conduit: str, event: machine.Event) -> list[Command]:
        commands: list[Command] = []
        for ref in self.refs():
            if ref.conduit == conduit:
                commands += self._apply(ref, event)
        return commands

    def _apply(self, ref: StreamRef, event: machine.Event) -> list[Command]:
        state = self._state(ref)
        assert state is not None
        before = state.phase
        state, actions = machine.step(state, event)
        self._count(before, state.phase)
        self._conduits[ref.conduit].streams[ref.stream] = state
        return self._commands(ref, state, actions)

    def _count(self, before: machine.Phase, after: machine.Phase) -> None:
        if after is not before:
            self.transitions[after] += 1

    @staticmethod
    def _commands(ref: StreamRef, state: machine.StreamState, actions: tuple[machine.Action, ...]) -> list[Command]:
        out: list[Command] = []
        for action in actions:
            if action is machine.Action.START:
                out.append(StartStream(ref, state.max_targets))
            elif action is machine.Action.STOP:
                out.append(StopStream(ref))
            else:
                out.append(RefreshStream(ref))
        return out
