"""The TAPA's NSP session of one trench, over :class:`meridio.api.nspclient.NspClient`.

Implements :class:`meridio.tapa.ports.TrenchSession`: the registry calls the opener makes, and the
trench's stream configuration merged with NSP reachability (``None`` is yielded when the channel to the
NSP is lost; the next list comes when the watch is back). Every failure is a ``TemporaryError`` to the
TAPA: even a request the NSP rejects is retried later (logged), because the TAPA cannot fix it.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.common.retry import PermanentError, TemporaryError

__all__ = ["NspSession", "nsp_address"]

_REJECTED_RETRY = 5.0  # seconds before watching again after the NSP rejected the watch


def nsp_address(template: str, *, trench: str, namespace: str) -> str:
    """The NSP address of ``trench`` from a template with ``{trench}`` and ``{namespace}``."""
    return template.format(trench=trench, namespace=namespace)


class NspSession:
    def __init__(self, address: str, trench: str, *, call_timeout: float = 5.0,
                 log: logmod.Logger = logmod.null, tls: tlsmod.Tls | None = None) -> None:
        self.trench = trench
        self._log = log.bind(trench=trench)
        self._call_timeout = call_timeout
        self._updates: asyncio.Queue[list[model.Stream] | None] = asyncio.Queue()
        self._client = NspClient(address, log=self._log, call_timeout=call_timeout,
                                 on_connectivity=self._connectivity, tls=tls)

    def _connectivity(self, up: bool) -> None:
        if not up:
            self._updates.put_nowait(None)

    async def register(self, target: model.Target) -> None:
        try:
            await self._client.register(target)
        except PermanentError as exc:
            raise TemporaryError(f"NSP rejected the target: {exc}") from None

    async def unregister(self, target: model.Target) -> None:
        try:
            await self._client.unregister(target)
        except PermanentError as exc:
            raise TemporaryError(f"NSP rejected the unregistration: {exc}") from None

    async def targets(self, stream: model.Stream) -> list[model.Target]:
        """The first list of the stream's DEFAULT targets (any status) from a registry watch."""
        flt = model.Target.make(status=model.TargetStatus.ANY, type=model.TargetType.DEFAULT, stream=stream)
        watch = self._client.watch_targets(flt)
        try:
            return await asyncio.wait_for(anext(watch), self._call_timeout)
        except TimeoutError:
            raise TemporaryError(f"NSP {self._client.address} did not list the targets of {stream.name} "
                                 f"within {self._call_timeout}s") from None
        except PermanentError as exc:
            raise TemporaryError(f"NSP rejected the target watch: {exc}") from None
        finally:
            await watch.aclose()  # type: ignore[attr-defined]

    async def watch_streams(self) -> AsyncIterator[list[model.Stream] | None]:
        pump = asyncio.ensure_future(self._pump())
        try:
            while True:
                yield await self._updates.get()
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _pump(self) -> None:
        flt = model.Stream("", model.Conduit("", model.Trench(self.trench)))
        while True:
            try:
                async for streams in self._client.watch_streams(flt):
                    self._updates.put_nowait(streams)
                return  # the client was closed
            except PermanentError as exc:
                self._log.error("nspWatchRejected", error=str(exc))
                await asyncio.sleep(_REJECTED_RETRY)

    async def close(self) -> None:
        await self._client.close()
