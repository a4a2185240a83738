"""Registering a target in a stream and keeping it registered (reference §1.2, Meridio ``stream.go``).

:func:`register_new` is Meridio's open algorithm: read the identifiers in use, pick a free one at
random, register DISABLED (the NSP forces new entries to DISABLED anyway), re-read; on a collision
unregister and pick another; finally register ENABLED. :func:`refresh` re-registers an entry before the
NSP keepalive expires and checks it is still ours and ENABLED (an NSP that expired it re-creates it
DISABLED). :func:`run` is the opener task of one stream: open with a 15 s timeout, retried every second
while failing; then refresh every ``entry_timeout``; re-open when the entry was lost. It reports to the
state machine (:mod:`meridio.tapa.machine`) through ``report``.

Deviation from Meridio, on purpose: after a failed refresh (NSP unreachable) the opener first tries to
refresh the identifier it had, and a new open prefers that identifier when it is free, so an NSP restart
does not move targets in the LB's Maglev tables.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Sequence

from meridio.api import model
from meridio.common import log as logmod
from meridio.common.retry import TemporaryError
from meridio.tapa import identifiers, machine
from meridio.tapa.ports import Registry, Sleeper

__all__ = ["Timing", "register_new", "refresh", "unregister", "run", "target"]

Report = Callable[[machine.Opened | machine.Failed | machine.EntryLost], None]


@dataclasses.dataclass(frozen=True)
class Timing:
    entry_timeout: float = 30.0
    """Seconds between refreshes (Meridio ``MERIDIO_NSP_ENTRY_TIMEOUT``; below the NSP's keepalive)."""
    pending_timeout: float = 15.0
    """Seconds one open or refresh attempt may take (Meridio ``PendingTime``)."""
    retry_interval: float = 1.0
    """Seconds between failed attempts."""


def target(stream: model.Stream, ips: Sequence[str], identifier: int | None,
           status: model.TargetStatus = model.TargetStatus.DISABLED) -> model.Target:
    context = {"identifier": str(identifier)} if identifier is not None else {}
    return model.Target.make(ips=ips, context=context, status=status, type=model.TargetType.DEFAULT,
                             stream=dataclasses.replace(stream, max_targets=0))


async def register_new(registry: Registry, stream: model.Stream, ips: Sequence[str], rng: random.Random, *,
                       prefer: int | None = None, log: logmod.Logger = logmod.null) -> int:
    """Meridio's open: take a free identifier without colliding with a concurrent opener; return it."""
    while True:
        used = identifiers.in_use(await registry.targets(stream), ips)
        identifier = identifiers.choose(stream.max_targets, used, rng, prefer=prefer)
        await registry.register(target(stream, ips, identifier))
        used = identifiers.in_use(await registry.targets(stream), ips)
        if identifier not in used:
            break
        log.info("identifierCollision", identifier=identifier, reason="takenConcurrently")
        await registry.unregister(target(stream, ips, identifier))
        prefer = None
    await registry.register(target(stream, ips, identifier, model.TargetStatus.ENABLED))
    return identifier


async def refresh(registry: Registry, stream: model.Stream, ips: Sequence[str], identifier: int) -> bool:
    """Re-register; ``True`` if the NSP now has our entry ENABLED with ``identifier`` and nobody else has it."""
    await registry.register(target(stream, ips, identifier, model.TargetStatus.ENABLED))
    targets = await registry.targets(stream)
    if identifier in identifiers.in_use(targets, ips):
        return False
    return any(t.status is model.TargetStatus.ENABLED and t.identifier == str(identifier)
               for t in identifiers.own_entries(targets, ips))


async def unregister(registry: Registry, stream: model.Stream, ips: Sequence[str]) -> None:
    await registry.unregister(target(stream, ips, None))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, identifiers.NoIdentifierAvailable):
        return "noIdentifierAvailable"
    if isinstance(exc, asyncio.TimeoutError):
        return "pendingTimeout"
    return "nspUnreachable"


async def run(registry: Registry, stream: model.Stream, ips: Sequence[str], *, report: Report,
              wake: asyncio.Event, sleeper: Sleeper, timing: Timing = Timing(),
              rng: random.Random | None = None, log: logmod.Logger = logmod.null) -> None:
    """The opener of one stream: runs until cancelled."""
    rng = rng or random.Random()
    identifier: int | None = None
    lost = False
    while True:
        identifier = await _establish(registry, stream, ips, identifier, lost, report=report, wake=wake,
                                      sleeper=sleeper, timing=timing, rng=rng, log=log)
        lost = await _keep(registry, stream, ips, identifier, report=report, wake=wake, sleeper=sleeper,
                           timing=timing, log=log)


async def _establish(registry: Registry, stream: model.Stream, ips: Sequence[str], identifier: int | None,
                     lost: bool, *, report: Report, wake: asyncio.Event, sleeper: Sleeper, timing: Timing,
                     rng: random.Random, log: logmod.Logger) -> int:
    """Get registered ENABLED; keep trying every ``retry_interval``. Returns the identifier."""
    while True:
        try:
            # Why refresh first: after an NSP outage our entry is usually still there (restored from
            # the NSP's database); re-registering it keeps the identifier and never disables it.
            if identifier is not None and not lost:
                if await asyncio.wait_for(refresh(registry, stream, ips, identifier), timing.pending_timeout):
                    report(machine.Opened())
                    log.info("streamOpened", identifier=identifier, reason="refreshed")
                    return identifier
                report(machine.EntryLost())
            identifier = await asyncio.wait_for(
                register_new(registry, stream, ips, rng, prefer=identifier, log=log), timing.pending_timeout)
            report(machine.Opened())
            log.info("streamOpened", identifier=identifier)
            return identifier
        except (TimeoutError, TemporaryError) as exc:
            report(machine.Failed(_reason(exc)))
            log.info("streamOpenFailed", reason=_reason(exc), error=str(exc))
            lost = False
            await sleeper.sleep(timing.retry_interval, wake)


async def _keep(registry: Registry, stream: model.Stream, ips: Sequence[str], identifier: int, *,
                report: Report, wake: asyncio.Event, sleeper: Sleeper, timing: Timing,
                log: logmod.Logger) -> bool:
    """Refresh until something goes wrong; return ``True`` if the entry was lost (re-open needed)."""
    while True:
        await sleeper.sleep(timing.entry_timeout, wake)
        try:
            ok = await asyncio.wait_for(refresh(registry, stream, ips, identifier), timing.pending_timeout)
        except (TimeoutError, TemporaryError) as exc:
            report(machine.Failed(_reason(exc)))
            log.info("streamRefreshFailed", reason=_reason(exc), error=str(exc))
            await sleeper.sleep(timing.retry_interval, wake)
            return False
        if not ok:
            report(machine.EntryLost())
            log.info("streamEntryLost", identifier=identifier, reason="notEnabledInNsp")
            return True
        report(machine.Opened())
