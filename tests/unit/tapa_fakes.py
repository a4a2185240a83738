"""Test doubles for the TAPA's pure logic — FAKES, not the real NSP or proxy.

``FakeNsp`` is an in-memory stand-in for the NSP target registry and configuration watch with the NSP
rules the TAPA relies on (reference §1.5): entry ID = ips + type + stream, Register of an unknown ID
forces DISABLED, Register of a known ID updates it, entries can be expired by the test. ``FakeLink``
stands in for a conduit's proxy link. ``FakeSleeper`` is a fake timer: sleeps end only when the test
advances fake time (or the wake event is set). The real NSP and proxy are exercised in
``tests/integration`` and ``tests/netns``.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

from meridio.api import model
from meridio.api.link import Link
from meridio.common.retry import TemporaryError
from meridio.tapa.refs import ConduitRef


def _stream_key(stream: model.Stream | None) -> str:
    if stream is None or stream.conduit is None or stream.conduit.trench is None:
        return ""
    return f"{stream.name}.{stream.conduit.name}.{stream.conduit.trench.name}"


def _id(target: model.Target) -> str:
    return f"{','.join(target.ips)}-{int(target.type)}-{_stream_key(target.stream)}"


class FakeNsp:
    """A fake NSP (registry + stream configuration) shared by every session of a test."""

    def __init__(self) -> None:
        self.entries: dict[str, model.Target] = {}
        self.streams: list[model.Stream] = []
        self.down = False
        self.calls: list[str] = []
        self.before_targets: Callable[[], None] | None = None
        """Runs before each ``targets`` read (to inject a concurrent registration)."""
        self._changed = asyncio.Event()
        self.sessions_closed = 0

    # registry
    async def _check(self) -> None:
        await asyncio.sleep(0)  # a real client yields to the loop on every call
        if self.down:
            raise TemporaryError("NSP unreachable (fake)")

    async def register(self, target: model.Target) -> None:
        await self._check()
        self.calls.append(f"register {target.identifier} {target.status.name}")
        key = _id(target)
        if key not in self.entries:
            target = dataclasses.replace(target, status=model.TargetStatus.DISABLED)
        self.entries[key] = target

    async def unregister(self, target: model.Target) -> None:
        await self._check()
        self.calls.append("unregister")
        self.entries.pop(_id(target), None)

    async def targets(self, stream: model.Stream) -> list[model.Target]:
        await self._check()
        if self.before_targets is not None:
            self.before_targets()
        return [t for t in self.entries.values()
                if _stream_key(t.stream) == _stream_key(stream) and t.type is model.TargetType.DEFAULT]

    def add_other(self, ip: str, identifier: int, stream: model.Stream,
                  status: model.TargetStatus = model.TargetStatus.ENABLED) -> None:
        target = model.Target.make(ips=(ip,), context={"identifier": str(identifier)}, status=status,
                                   stream=stream)
        self.entries[_id(target)] = target

    def expire_all(self) -> None:
        """What the NSP does when keepalives run out."""
        self.entries.clear()

    def enabled(self, stream: model.Stream) -> dict[str, str | None]:
        """ips -> identifier of the ENABLED entries of ``stream``."""
        return {",".join(t.ips): t.identifier for t in self.entries.values()
                if _stream_key(t.stream) == _stream_key(stream) and t.status is model.TargetStatus.ENABLED}

    # configuration
    def set_streams(self, streams: list[model.Stream]) -> None:
        self.streams = streams
        self._changed.set()

    def set_down(self, down: bool) -> None:
        self.down = down
        self._changed.set()

    def session(self, trench: str) -> FakeSession:
        return FakeSession(self, trench)


class FakeSession:
    """A fake per-trench NSP session over :class:`FakeNsp`."""

    def __init__(self, nsp: FakeNsp, trench: str) -> None:
        self.nsp = nsp
        self.trench = trench

    async def register(self, target: model.Target) -> None:
        await self.nsp.register(target)

    async def unregister(self, target: model.Target) -> None:
        await self.nsp.unregister(target)

    async def targets(self, stream: model.Stream) -> list[model.Target]:
        return await self.nsp.targets(stream)

    async def watch_streams(self) -> AsyncIterator[list[model.Stream] | None]:
        while True:
            self.nsp._changed.clear()
            if self.nsp.down:
                yield None
            else:
                yield [s for s in self.nsp.streams
                       if s.conduit and s.conduit.trench and s.conduit.trench.name == self.trench]
            await self.nsp._changed.wait()

    async def close(self) -> None:
        self.nsp.sessions_closed += 1


class FakeLink:
    """A fake conduit link: connect gives fixed addresses unless ``fail`` is set."""

    def __init__(self, conduit: ConduitRef, addresses: tuple[str, ...], log: list[str]) -> None:
        self.conduit = conduit
        self.addresses = addresses
        self.fail = False
        self.log = log
        self.updates: asyncio.Queue[Link | None] = asyncio.Queue()

    async def connect(self, interface_name: str) -> Link:
        if self.fail:
            raise TemporaryError("proxy unreachable (fake)")
        self.log.append(f"connect {self.conduit.conduit} {interface_name}")
        return Link(target_id="", interface_name=interface_name, addresses=self.addresses)

    async def disconnect(self) -> None:
        self.log.append(f"disconnect {self.conduit.conduit}")

    async def watch(self) -> AsyncIterator[Link | None]:
        while True:
            yield await self.updates.get()


class FakeSleeper:
    """A fake timer: ``sleep`` returns when the test advances fake time past its deadline, or on wake."""

    def __init__(self) -> None:
        self.now = 0.0
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((self.now + seconds, future))
        waits: set[asyncio.Future[object]] = {future}  # type: ignore[arg-type]
        waker = asyncio.ensure_future(wake.wait()) if wake is not None else None
        if waker is not None:
            waits.add(waker)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waker is not None:
                waker.cancel()
            self._waiting = [(d, f) for d, f in self._waiting if f is not future]
        woken = wake is not None and wake.is_set()
        if wake is not None:
            wake.clear()
        return woken

    @property
    def pending(self) -> list[float]:
        """Remaining fake seconds of every sleeper."""
        return sorted(d - self.now for d, _ in self._waiting)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in list(self._waiting):
            if deadline <= self.now and not future.done():
                future.set_result(None)
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (the fakes answer without real waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
