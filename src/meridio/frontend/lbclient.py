"""Client of the collocated load balancer's ``loadbalancer.v1.StreamAvailabilityService`` (unix socket).

:func:`watch_availability` yields ``True``/``False`` each time the LB's answer about *this* pod changes:
``True`` while the response holds a target whose ``identifier`` is our hostname (the LB has at least one
stream with at least one target), ``False`` otherwise, and ``False`` as soon as the LB cannot be reached
(then it reconnects with backoff). Every answer is yielded the moment it arrives, so the frontend can
announce or withdraw at once.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.pb.loadbalancer.v1 import stream_pb2_grpc
from meridio.common import grpcutil, identity
from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.common.retry import Backoff
from meridio.frontend import announce

__all__ = ["watch_availability"]


def _backoff() -> Backoff:
    return Backoff(initial=0.2, cap=2.0)


async def watch_availability(address: str, hostname: str, *, log: logmod.Logger = logmod.null,
                             backoff: Callable[[], Backoff] = _backoff,
                             tls: tlsmod.Tls | None = None) -> AsyncIterator[bool]:
    """Availability of the LB at ``address`` (``unix:///var/lib/meridio/lb.sock``) for ``hostname``.

    ``tls``: mutual TLS with this frontend's certificate (a new channel, so the current files, on every
    reconnect); ``None`` only in insecure mode."""
    delay = backoff()
    last: bool | None = None
    log = log.bind(lb=address)
    while True:
        try:
            channel = grpcutil.channel(address, tls=tls, server=identity.Component.LB)
        except tlsmod.TlsError as exc:
            log.warning("lbWatchFailed", reason="tls", error=str(exc))
            await asyncio.sleep(delay.next_delay())
            continue
        async with channel:
            stub = stream_pb2_grpc.StreamAvailabilityServiceStub(channel)
            call = stub.Watch(empty_pb2.Empty(), wait_for_ready=False)
            try:
                async for response in call:
                    delay.reset()
                    available = announce.lb_available((dict(t.context) for t in response.targets), hostname)
                    if available != last:
                        last = available
                        log.info("lbAvailability", available=available)
                        yield available
                log.warning("lbWatchEnded", reason="streamClosedByServer")
            except grpc.aio.AioRpcError as exc:
                # Loud once per outage, quiet while retrying (the LB may simply not be up yet).
                (log.warning if last is not False else log.debug)(
                    "lbWatchFailed", reason=exc.code().name, error=exc.details() or "")
            finally:
                call.cancel()
        if last is not False:
            last = False
            yield False
        await asyncio.sleep(delay.next_delay())
