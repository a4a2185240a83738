"""The TAPA's asyncio owner: runs :class:`~meridio.tapa.manager.Manager` and carries out its commands.

Only this class mutates the manager, always synchronously between awaits (one owner). Commands become
tasks in one TaskGroup: a stream's opener, its stop (unregister), a conduit's link (connect with retry,
then watch), its disconnect, the trench's configuration watch and its NSP connection close. Ordering
that matters is enforced by awaiting the previous task: a stream is unregistered before it is
registered again and before its conduit's link is removed; a link is disconnected before it is
connected again; the NSP connection is closed after every unregister that needs it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from meridio.api.link import Link
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.common.retry import TemporaryError
from meridio.tapa import machine, manager, opener
from meridio.tapa.manager import StreamStatus
from meridio.tapa.ports import ConduitLink, RealSleeper, Sleeper, TrenchSession
from meridio.tapa.refs import ConduitRef, Filter, StreamRef

__all__ = ["Tap", "TapOptions"]

TrenchFactory = Callable[[str], TrenchSession]
LinkFactory = Callable[[ConduitRef], ConduitLink]


@dataclasses.dataclass(frozen=True)
class TapOptions:
    timing: opener.Timing = opener.Timing()
    connect_retry: float = 2.0
    """Seconds between attempts to connect a conduit's link (Meridio: 2 s)."""
    teardown_timeout: float = 5.0
    """Seconds an unregister or a link disconnect may take before it is given up (logged)."""
    interface_prefix: str = "nsm-"


def _local_interfaces() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


@dataclasses.dataclass
class _Trench:
    session: TrenchSession
    watch: asyncio.Task[None]
    teardown: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Conduit:
    link: ConduitLink
    interface: str
    task: asyncio.Task[None] | None = None
    info: Link | None = None
    stops: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Stream:
    ips: tuple[str, ...]
    session: TrenchSession
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Tap:
    """Open/Close/Watch for the servicer; :meth:`run` hosts every task until ``stop`` is set."""

    def __init__(self, *, trench_factory: TrenchFactory, link_factory: LinkFactory,
                 options: TapOptions = TapOptions(), sleeper: Sleeper | None = None,
                 rng: random.Random | None = None, interfaces: Callable[[], set[str]] = _local_interfaces,
                 log: logmod.Logger = logmod.null) -> None:
        self._trench_factory = trench_factory
        self._link_factory = link_factory
        self._options = options
        self._sleeper = sleeper or RealSleeper()
        self._rng = rng or random.Random()
        self._interfaces = interfaces
        self._log = log
        self._manager = manager.Manager()
        self._tg: asyncio.TaskGroup | None = None
        self._trench: _Trench | None = None
        self._conduits: dict[ConduitRef, _Conduit] = {}
        self._streams: dict[StreamRef, _Stream] = {}
        self._stopping: dict[StreamRef, asyncio.Task[None]] = {}
        self._disconnecting: dict[ConduitRef, asyncio.Task[None]] = {}
        self._teardowns: set[asyncio.Task[None]] = set()
        self._published: list[StreamStatus] = []
        self._watchers: set[asyncio.Event] = set()
        self._closed = False
        self._shutting_down = False

    # --- API (servicer) ------------------------------------------------------------------------

    def open(self, ref: StreamRef) -> None:
        """Ask for ``ref`` to be opened; returns at once. Raises ``InvalidRequest`` (another trench)."""
        self._require_running()
        self._execute(self._manager.open(ref))
        self._log.info("streamOpenRequested", trench=ref.trench, conduit=ref.conduit, stream=ref.stream)

    def close(self, ref: StreamRef) -> None:
        """Ask for ``ref`` to be closed; returns at once (closing is asynchronous)."""
        self._require_running()
        self._execute(self._manager.close(ref))
        self._log.info("streamCloseRequested", trench=ref.trench, conduit=ref.conduit, stream=ref.stream)

    def statuses(self, filt: Filter | None = None) -> list[StreamStatus]:
        return self._manager.statuses(filt)

    def state(self, ref: StreamRef) -> machine.StreamState | None:
        return self._manager.state(ref)

    def streams(self) -> list[tuple[StreamRef, machine.StreamState]]:
        """Every open stream and its state (for metrics)."""
        return self._manager.streams()

    @property
    def transitions(self) -> dict[machine.Phase, int]:
        """Phase changes since start, by the phase entered (for metrics)."""
        return self._manager.transitions

    async def watch(self, filt: Filter) -> AsyncIterator[list[StreamStatus]]:
        """The matching statuses now and after every change; ends when the TAPA stops."""
        changed = asyncio.Event()
        self._watchers.add(changed)
        last: list[StreamStatus] | None = None
        try:
            while not self._closed:
                current = self._manager.statuses(filt)
                if current != last:
                    last = current
                    yield current
                await changed.wait()
                changed.clear()
        finally:
            self._watchers.discard(changed)

    async def run(self, stop: asyncio.Event) -> None:
        """Host the TAPA's tasks until ``stop``; then close every stream and wait for the teardown."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            await stop.wait()
            self._shutting_down = True
            self._execute(self._manager.close_all())
            await self._drain()
            self._closed = True
            self._notify()
            for task in list(self._teardowns):
                task.cancel()
        self._tg = None

    # --- commands ----------------------------------------------------------------------------

    def _execute(self, commands: list[manager.Command]) -> None:
        for command in commands:
            if isinstance(command, manager.ConnectTrench):
                self._connect_trench(command.trench)
            elif isinstance(command, manager.DisconnectTrench):
                self._disconnect_trench()
            elif isinstance(command, manager.ConnectConduit):
                self._connect_conduit(command.conduit)
            elif isinstance(command, manager.DisconnectConduit):
                self._disconnect_conduit(command.conduit)
            elif isinstance(command, manager.StartStream):
                self._start_stream(command.ref, command.max_targets)
            elif isinstance(command, manager.StopStream):
                self._stop_stream(command.ref)
            elif isinstance(command, manager.RefreshStream):
                if command.ref in self._streams:
                    self._streams[command.ref].wake.set()
        self._notify()

    def _connect_trench(self, trench: str) -> None:
        session = self._trench_factory(trench)
        watch = self._spawn(lambda: self._watch_config(trench, session), f"watchConfig/{trench}")
        self._trench = _Trench(session, watch)
        self._log.info("trenchConnected", trench=trench)

    def _disconnect_trench(self) -> None:
        if self._trench is None:
            return
        old, self._trench = self._trench, None
        old.watch.cancel()
        waits = [*old.teardown, *self._disconnecting.values()]  # unregisters need the session
        self._teardown(lambda: self._close_session(old.session, waits), "closeTrench")

    def _connect_conduit(self, conduit: ConduitRef) -> None:
        rt = _Conduit(self._link_factory(conduit), self._next_interface())
        self._conduits[conduit] = rt
        previous = self._disconnecting.get(conduit)
        rt.task = self._spawn(lambda: self._run_link(conduit, rt, previous), f"link/{conduit}")

    def _disconnect_conduit(self, conduit: ConduitRef) -> None:
        rt = self._conduits.pop(conduit, None)
        if rt is None:
            return
        assert rt.task is not None
        rt.task.cancel()
        task = self._teardown(lambda: self._disconnect_link(conduit, rt), f"disconnect/{conduit}")
        self._disconnecting[conduit] = task
        task.add_done_callback(lambda t: self._forget(self._disconnecting, conduit, t))

    def _start_stream(self, ref: StreamRef, max_targets: int) -> None:
        conduit = self._conduits.get(ref.conduit_ref)
        assert conduit is not None and conduit.info is not None and self._trench is not None
        rt = _Stream(conduit.info.addresses, self._trench.session)
        previous = self._stopping.get(ref)
        rt.task = self._spawn(lambda: self._run_opener(ref, rt, max_targets, previous), f"opener/{ref}")
        self._streams[ref] = rt

    def _stop_stream(self, ref: StreamRef) -> None:
        rt = self._streams.pop(ref, None)
        if rt is None:
            return
        assert rt.task is not None
        rt.task.cancel()
        task = self._teardown(lambda: self._unregister(ref, rt), f"unregister/{ref}")
        self._stopping[ref] = task
        task.add_done_callback(lambda t: self._forget(self._stopping, ref, t))
        conduit = self._conduits.get(ref.conduit_ref)
        if conduit is not None:
            conduit.stops = [t for t in conduit.stops if not t.done()] + [task]
        if self._trench is not None:
            self._trench.teardown = [t for t in self._trench.teardown if not t.done()] + [task]

    # --- tasks ---------------------------------------------------------------------------------

    async def _watch_config(self, trench: str, session: TrenchSession) -> None:
        async for streams in session.watch_streams():
            if streams is None:
                self._execute(self._manager.nsp(trench, False))
                continue
            config = {(s.conduit.name, s.name): s.max_targets for s in streams
                      if s.conduit is not None and (s.conduit.trench is None or s.conduit.trench.name == trench)}
            self._execute(self._manager.nsp(trench, True) + self._manager.configuration(trench, config))

    async def _run_link(self, conduit: ConduitRef, rt: _Conduit, previous: asyncio.Task[None] | None) -> None:
        log = self._log.bind(trench=conduit.trench, conduit=conduit.conduit)
        if previous is not None:
            await asyncio.wait({previous})
        while True:
            info = await self._connect_link(rt, log)
            self._link_changed(conduit, rt, info)
            try:
                async for update in rt.link.watch():
                    self._link_changed(conduit, rt, update)
                    if update is None:
                        break
            except TemporaryError as exc:
                log.info("linkWatchLost", error=str(exc))
            await self._sleeper.sleep(self._options.connect_retry)

    async def _connect_link(self, rt: _Conduit, log: logmod.Logger) -> Link:
        while True:
            try:
                info = await rt.link.connect(rt.interface)
                log.info("linkConnected", interface=info.interface_name, ips=list(info.addresses))
                return info
            except TemporaryError as exc:
                log.info("linkConnectFailed", error=str(exc))
            await self._sleeper.sleep(self._options.connect_retry)

    def _link_changed(self, conduit: ConduitRef, rt: _Conduit, info: Link | None) -> None:
        old = rt.info
        if info is not None and old is not None and info.addresses == old.addresses:
            rt.info = info
            return
        if old is not None:
            rt.info = None
            self._execute(self._manager.conduit_link(conduit, False))
        if info is not None:
            rt.info = info
            rt.interface = info.interface_name or rt.interface
            self._execute(self._manager.conduit_link(conduit, True))

    async def _run_opener(self, ref: StreamRef, rt: _Stream, max_targets: int,
                          previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        log = self._log.bind(trench=ref.trench, conduit=ref.conduit, stream=ref.stream)

        def report(event: machine.Opened | machine.Failed | machine.EntryLost) -> None:
            if self._streams.get(ref) is rt:
                self._execute(self._manager.report(ref, event))

        await opener.run(rt.session, ref.to_model(max_targets), rt.ips, report=report, wake=rt.wake,
                         sleeper=self._sleeper, timing=self._options.timing, rng=self._rng, log=log)

    async def _unregister(self, ref: StreamRef, rt: _Stream) -> None:
        assert rt.task is not None
        await asyncio.wait({rt.task})
        try:
            await asyncio.wait_for(opener.unregister(rt.session, ref.to_model(), rt.ips),
                                   self._options.teardown_timeout)
            self._log.info("targetUnregistered", trench=ref.trench, conduit=ref.conduit, stream=ref.stream)
        except (TimeoutError, TemporaryError) as exc:
            self._log.warning("targetUnregisterFailed", trench=ref.trench, conduit=ref.conduit,
                              stream=ref.stream, error=str(exc) or repr(exc), reason="leftToKeepalive")

    async def _disconnect_link(self, conduit: ConduitRef, rt: _Conduit) -> None:
        assert rt.task is not None
        await asyncio.wait({rt.task, *rt.stops})
        try:
            await asyncio.wait_for(rt.link.disconnect(), self._options.teardown_timeout)
            self._log.info("linkDisconnected", trench=conduit.trench, conduit=conduit.conduit)
        except (TimeoutError, TemporaryError) as exc:
            self._log.warning("linkDisconnectFailed", trench=conduit.trench, conduit=conduit.conduit,
                              error=str(exc) or repr(exc))

    async def _close_session(self, session: TrenchSession, waits: list[asyncio.Task[None]]) -> None:
        if waits:
            await asyncio.wait(set(waits))
        await session.close()

    # --- helpers -------------------------------------------------------------------------------

    def _spawn(self, coro: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None]:
        return self._task(coro, name, expect_end=False)

    def _teardown(self, coro: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None]:
        task = self._task(coro, name, expect_end=True)
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return task

    def _task(self, coro: Callable[[], Coroutine[Any, Any, None]], name: str, *, expect_end: bool
              ) -> asyncio.Task[None]:
        # The coroutine is created inside the task, so a task cancelled before it ever ran leaves no
        # never-awaited coroutine behind.
        async def guarded() -> None:
            await tasks.guard(coro(), name, self._log, expect_end=expect_end)

        assert self._tg is not None
        return self._tg.create_task(guarded(), name=name)

    @staticmethod
    def _forget(table: dict[Any, asyncio.Task[None]], key: Any, task: asyncio.Task[None]) -> None:
        if table.get(key) is task:
            del table[key]

    async def _drain(self) -> None:
        while self._teardowns:
            await asyncio.wait(set(self._teardowns))

    def _next_interface(self) -> str:
        taken = self._interfaces() | {c.interface for c in self._conduits.values()}
        index = 0
        while f"{self._options.interface_prefix}{index}" in taken:
            index += 1
        return f"{self._options.interface_prefix}{index}"

    def _notify(self) -> None:
        current = self._manager.statuses()
        if current != self._published or self._closed:
            self._published = current
            for event in self._watchers:
                event.set()

    def _require_running(self) -> None:
        if self._tg is None or self._shutting_down:
            raise TemporaryError("the TAPA is not running")
