"""What the TAPA needs from the NSP and from the conduit's proxy, as typing Protocols.

The adapters (:mod:`meridio.tapa.nspport`, :mod:`meridio.tapa.linkport`) implement them over the real
gRPC clients; unit tests implement them in memory (named as fakes).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from meridio.api import model
from meridio.api.link import Link

__all__ = ["Registry", "TrenchSession", "ConduitLink", "Sleeper", "RealSleeper"]


class Registry(Protocol):
    """The NSP target registry, as the opener uses it. Failures raise ``TemporaryError``."""

    async def register(self, target: model.Target) -> None: ...

    async def unregister(self, target: model.Target) -> None: ...

    async def targets(self, stream: model.Stream) -> list[model.Target]:
        """Every DEFAULT target of ``stream`` (any status), as the NSP has them now."""
        ...


class TrenchSession(Registry, Protocol):
    """The NSP connection of one trench."""

    def watch_streams(self) -> AsyncIterator[list[model.Stream] | None]:
        """The trench's streams now and after every change; ``None`` while the NSP is unreachable.

        Never ends on its own (reconnects forever)."""
        ...

    async def close(self) -> None: ...


class ConduitLink(Protocol):
    """The link of this target to one conduit (through the proxy of its node). Failures raise
    ``TemporaryError``."""

    async def connect(self, interface_name: str) -> Link: ...

    async def disconnect(self) -> None: ...

    def watch(self) -> AsyncIterator[Link | None]:
        """The link now and after every change; ``None`` when the proxy no longer has it. Ends when the
        proxy goes away."""
        ...


class Sleeper(Protocol):
    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Wait ``seconds`` or until ``wake`` is set (then clear it); return whether woken."""
        ...


class RealSleeper:
    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if wake is None:
            await asyncio.sleep(seconds)
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        woken = wake.is_set()
        wake.clear()
        return woken
