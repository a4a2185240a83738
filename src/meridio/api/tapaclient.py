"""A client of a target's TAPA (``ambassador.v1.Tap`` on the pod's unix socket), as the local runtime uses it.

- :func:`open_streams`: what the example application does at start (Meridio's ``target-client open``):
  wait for the TAPA socket, then Open each stream, retrying while the TAPA is not serving yet;
- :func:`statuses`: the current stream statuses (the first message of ``Watch`` with an empty filter),
  for ``meridio status`` and readiness.
"""
from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Sequence

import grpc
import grpc.aio

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.common import log as logmod
from meridio.common import retry

__all__ = ["StreamStatus", "open_streams", "statuses", "stream_message"]


@dataclasses.dataclass(frozen=True)
class StreamStatus:
    """A stream as the TAPA reports it (also what ``meridio status`` shows per target pod)."""

    status: str
    stream: str
    conduit: str
    trench: str

    @classmethod
    def from_pb(cls, s: tap_pb2.StreamStatus) -> StreamStatus:
        """One entry of a ``Watch`` response."""
        return cls(tap_pb2.StreamStatus.Status.Name(s.status), s.stream.name, s.stream.conduit.name,
                   s.stream.conduit.trench.name)

    @property
    def ref(self) -> str:
        """``trench/conduit/stream``."""
        return f"{self.trench}/{self.conduit}/{self.stream}"

    def line(self) -> str:
        """Meridio's target-client line: ``STATUS - stream - conduit - trench``."""
        return f"{self.status} - {self.stream} - {self.conduit} - {self.trench}"


def stream_message(ref: str) -> tap_pb2.Stream:
    """``trench/conduit/stream`` as an ``ambassador.v1.Stream``."""
    trench, conduit, stream = ref.split("/")
    return tap_pb2.Stream(name=stream, conduit=tap_pb2.Conduit(name=conduit, trench=tap_pb2.Trench(name=trench)))


async def open_streams(socket: pathlib.Path, streams: Sequence[str], *, log: logmod.Logger = logmod.null,
                       deadline_s: float = 120.0) -> None:
    """Open ``streams`` (``trench/conduit/stream``) through the TAPA at ``socket`` once it serves."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    backoff = retry.Backoff(initial=0.1, cap=2.0)
    pending = list(streams)
    while pending:
        if loop.time() > end:
            log.error("streamOpenFailed", streams=pending, reason="tapaNotServing")
            return
        if socket.exists():
            pending = await _try_open(socket, pending, log)
        if pending:
            await asyncio.sleep(backoff.next_delay())
    log.info("streamsOpened", streams=list(streams))


async def _try_open(socket: pathlib.Path, streams: Sequence[str], log: logmod.Logger) -> list[str]:
    left = []
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = tap_pb2_grpc.TapStub(channel)
        for ref in streams:
            try:
                await stub.Open(stream_message(ref), timeout=5)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.error("streamOpenRejected", stream=ref, error=exc.details())
                    continue
                left.append(ref)
    return left


async def statuses(socket: pathlib.Path, timeout: float = 2.0) -> list[StreamStatus] | None:
    """The TAPA's stream statuses now, or None if it does not answer."""
    if not socket.exists():
        return None
    try:
        async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
            stub = tap_pb2_grpc.TapStub(channel)
            call = stub.Watch(tap_pb2.Stream(), timeout=timeout)
            async for response in call:
                call.cancel()
                return [StreamStatus.from_pb(s) for s in response.streamStatus]
    except (grpc.aio.AioRpcError, OSError):
        return None
    return None
