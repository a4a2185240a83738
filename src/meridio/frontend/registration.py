"""Keep the frontend's FRONTEND target registered in the NSP while it has gateway connectivity.

Meridio's frontend registers ``Target{ips: [hostname], type: FRONTEND, context: {identifier: hostname}}``
when it gains connectivity, re-registers it every ``NFE_NSP_ENTRY_TIMEOUT`` (before the NSP's keepalive
expires it) and unregisters it when connectivity is lost; the collocated LB blocks itself without it.
:func:`keep_registered` is that loop; it wakes on ``wake`` (set on every connectivity change) and retries
failed calls with backoff.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from meridio.api import model
from meridio.common import log as logmod
from meridio.common.retry import Backoff, PermanentError, TemporaryError

__all__ = ["Registry", "keep_registered"]


class Registry(Protocol):
    """What is needed of :class:`meridio.api.nspclient.NspClient`."""

    async def register(self, target: model.Target) -> None: ...

    async def unregister(self, target: model.Target) -> None: ...


async def keep_registered(registry: Registry, target: model.Target, connected: Callable[[], bool],
                          wake: asyncio.Event, *, refresh_s: float, backoff: Backoff | None = None,
                          log: logmod.Logger = logmod.null) -> None:
    """Never returns; registers ``target`` while ``connected()``, unregisters it otherwise."""
    backoff = backoff or Backoff(initial=1.0, cap=5.0)
    registered, wait = False, refresh_s
    while True:
        try:
            if connected():
                await registry.register(target)
                if not registered:
                    log.info("frontendTargetRegistered", target=target.identifier)
                registered = True
            elif registered:
                await registry.unregister(target)
                log.info("frontendTargetUnregistered", target=target.identifier, reason="noConnectivity")
                registered = False
            wait = refresh_s
            backoff.reset()
        except (TemporaryError, PermanentError) as exc:
            wait = backoff.next_delay()
            log.warning("frontendTargetRegistrationFailed", error=str(exc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), wait)
        wake.clear()
