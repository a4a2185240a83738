"""Conduit prefixes follow the NSP: ``WatchConduit(Conduit{Trench})`` drives :meth:`Registry.set_conduits`.

Every list the NSP sends is the trench's complete set of conduits (Meridio resends the full filtered
list on each change), so each one is applied as the desired state: new conduits get a prefix; a missing
one keeps its prefix and allocations for the registry's release grace (``IPAM_RELEASE_GRACE``) and loses
them only if it is still missing then (a configuration gone for a moment must not free addresses still
in use). When the watch fails or ends, the prefixes stay as
they are (a restarting NSP must not wipe the allocations) and the watch is retried with backoff.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from meridio.api import model
from meridio.common import log as logmod
from meridio.common.retry import Backoff
from meridio.ipam.registry import Registry

__all__ = ["ConduitSource", "conduit_names", "follow_conduits"]


class ConduitSource(Protocol):
    """What the IPAM needs from the NSP client (:class:`meridio.api.nspclient.NspClient`)."""

    def watch_conduits(self, conduit: model.Conduit) -> AsyncIterator[Sequence[model.Conduit]]: ...


def conduit_names(trench: str, conduits: Sequence[model.Conduit]) -> list[str]:
    """The names of the conduits of ``trench`` in one watch update (others are ignored)."""
    return sorted({c.name for c in conduits if c.name and (c.trench is None or c.trench.name == trench)})


async def follow_conduits(source: ConduitSource, registry: Registry, *, log: logmod.Logger = logmod.null,
                          backoff: Backoff | None = None,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                          on_update: Callable[[], None] | None = None) -> None:
    """Apply every conduit list of the NSP to ``registry``, forever (re-watching after failures).

    ``on_update`` is called after each applied list (the app marks itself ready on the first one).
    """
    backoff = backoff or Backoff(initial=1.0, cap=10.0)
    wanted = model.Conduit(name="", trench=model.Trench(registry.trench))
    while True:
        try:
            async for conduits in source.watch_conduits(wanted):
                names = conduit_names(registry.trench, conduits)
                registry.set_conduits(names)
                log.debug("conduitsUpdated", conduits=names)
                backoff.reset()
                if on_update is not None:
                    on_update()
            log.warning("conduitWatchEnded", reason="streamEnded")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: keep the prefixes, watch again later
            log.warning("conduitWatchFailed", reason="watchError", error=str(exc))
        await sleep(backoff.next_delay())
