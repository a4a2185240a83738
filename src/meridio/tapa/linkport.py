"""The TAPA's link to one conduit, over the proxy's link service client (:mod:`meridio.api.linkclient`).

Implements :class:`meridio.tapa.ports.ConduitLink`: Connect/Disconnect/Watch of this target's link
(``target_id`` = the target name), with every failure turned into a ``TemporaryError`` (the TAPA
retries). Written against the link service contract in ``proto/meridio/proxy/v1/link.proto``.

A TAPA restarted in the same namespace finds its link still there (the proxy keeps it while the
namespace lives) under the name its predecessor chose; the proxy only reconnects a link under its own
name, so when a Connect is refused this adapter asks the proxy for the existing link and connects
again with that name.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from meridio.api import linkclient
from meridio.api.link import Link
from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.common.retry import PermanentError, TemporaryError

__all__ = ["ProxyLink"]

_LOOKUP_TIMEOUT_S = 5.0


class ProxyLink:
    def __init__(self, socket_path: str, target_id: str, *, log: logmod.Logger = logmod.null,
                 tls: tlsmod.Tls | None = None) -> None:
        self._tls = tls
        self._path = socket_path
        self._target_id = target_id
        self._log = log

    async def connect(self, interface_name: str) -> Link:
        try:
            return await self._connect(interface_name)
        except TemporaryError:
            existing = await self._existing_name()
            if existing is None or existing == interface_name:
                raise
            self._log.info("linkAdopted", interface=existing, reason="linkedByAPreviousRun")
            return await self._connect(existing)

    async def _connect(self, interface_name: str) -> Link:
        try:
            return await linkclient.connect(self._path, self._target_id, interface_name, tls=self._tls)
        except PermanentError as exc:
            raise TemporaryError(f"proxy refused the link: {exc}") from None
        except OSError as exc:
            raise TemporaryError(f"proxy at {self._path} unreachable: {exc}") from None

    async def _existing_name(self) -> str | None:
        """The interface name of the link the proxy already has for this target, if any."""
        watch = self.watch()
        try:
            first = await asyncio.wait_for(anext(watch), _LOOKUP_TIMEOUT_S)
        except (TimeoutError, TemporaryError, StopAsyncIteration):
            return None
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
        return first.interface_name if first is not None else None

    async def disconnect(self) -> None:
        try:
            await linkclient.disconnect(self._path, self._target_id, tls=self._tls)
        except PermanentError as exc:
            raise TemporaryError(f"proxy refused the disconnect: {exc}") from None
        except OSError as exc:
            raise TemporaryError(f"proxy at {self._path} unreachable: {exc}") from None

    async def watch(self) -> AsyncIterator[Link | None]:
        try:
            async for link in linkclient.watch(self._path, self._target_id, tls=self._tls):
                yield link if link.connected else None
        except PermanentError as exc:
            raise TemporaryError(f"proxy refused the watch: {exc}") from None
        except OSError as exc:
            raise TemporaryError(f"proxy at {self._path} unreachable: {exc}") from None
