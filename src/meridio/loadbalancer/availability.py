"""``loadbalancer.v1.StreamAvailabilityService`` (reference §1.7): tells the collocated frontend whether
this LB can forward, so that it announces the VIPs only then.

While at least one stream has at least one target in its Maglev table, every watcher gets one
aggregated target ``{context: {"identifier": <hostname>}}``; otherwise an empty ``Target{}``. The
current value is sent on Watch, duplicates are suppressed, and when the LB stops the watchers get
"unavailable" before their stream ends. At most :data:`MAX_WATCHERS` watch streams at once (the
collocated frontend needs one); more are ``RESOURCE_EXHAUSTED``.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.pb.loadbalancer.v1 import stream_pb2, stream_pb2_grpc
from meridio.common import log as logmod

__all__ = ["Availability", "AvailabilityService", "response_for", "MAX_WATCHERS"]

MAX_WATCHERS = 16
"""Watch streams the availability service serves at once."""


def response_for(available: bool, hostname: str) -> stream_pb2.Response:
    if available:
        return stream_pb2.Response(targets=[stream_pb2.Target(context={"identifier": hostname})])
    return stream_pb2.Response(targets=[stream_pb2.Target()])


class Availability:
    """The current value and its watchers (one asyncio loop)."""

    def __init__(self, hostname: str, *, log: logmod.Logger = logmod.null) -> None:
        self.hostname = hostname
        self.available = False
        self._log = log
        self._queues: set[asyncio.Queue[bool | None]] = set()
        self._closed = False

    @property
    def watchers(self) -> int:
        """Watch streams open now."""
        return len(self._queues)

    def set(self, available: bool) -> None:
        if available == self.available:
            return
        self.available = available
        self._log.info("availabilityChanged", available=available)
        for q in self._queues:
            q.put_nowait(available)

    def close(self) -> None:
        """Send "unavailable" to every watcher, then end their streams."""
        self._closed = True
        for q in self._queues:
            if self.available:
                q.put_nowait(False)
            q.put_nowait(None)

    async def watch(self) -> AsyncIterator[stream_pb2.Response]:
        queue: asyncio.Queue[bool | None] = asyncio.Queue()
        self._queues.add(queue)
        try:
            last = self.available
            yield response_for(last, self.hostname)
            if self._closed:
                return
            while (value := await queue.get()) is not None:
                if value != last:
                    last = value
                    yield response_for(value, self.hostname)
        finally:
            self._queues.discard(queue)


class AvailabilityService(stream_pb2_grpc.StreamAvailabilityServiceServicer):
    def __init__(self, availability: Availability) -> None:
        self._availability = availability

    async def Watch(self, request: empty_pb2.Empty,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[stream_pb2.Response]:
        if self._availability.watchers >= MAX_WATCHERS:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"watch: already {MAX_WATCHERS} watch streams (the limit); close some first")
        async for response in self._availability.watch():
            yield response
