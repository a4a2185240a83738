"""``ambassador.v1.Tap`` servicer: decode, call :class:`meridio.tapa.tap.Tap`, encode, map errors.

Status codes: a malformed Stream (Meridio's nil checks, empty or invalid names) → ``INVALID_ARGUMENT``;
a second trench → ``FAILED_PRECONDITION`` ("another trench is already connected"); the TAPA shutting
down → ``UNAVAILABLE``; a Watch beyond ``max_watchers`` streams open at once (``MERIDIO_MAX_WATCHERS``,
:data:`MAX_WATCHERS`) → ``RESOURCE_EXHAUSTED``, before anything is subscribed. Open and Close return at
once: opening and closing are asynchronous, their progress is what Watch reports.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.common import grpcutil
from meridio.common import log as logmod
from meridio.tapa import refs
from meridio.tapa.manager import AnotherTrench, StreamStatus
from meridio.tapa.tap import Tap

__all__ = ["MAX_WATCHERS", "TapServicer", "statuses_to_pb"]

MAX_WATCHERS = 64
"""Watch streams one TAPA serves at once (``MERIDIO_MAX_WATCHERS``): its API socket is node-local and
owner-only, so every caller is the one peer and only a total applies."""

_log = logmod.get("tapa")


def statuses_to_pb(statuses: list[StreamStatus]) -> tap_pb2.StreamResponse:
    return tap_pb2.StreamResponse(streamStatus=[
        tap_pb2.StreamStatus(status=s.status.name, stream=refs.ref_to_pb(s.ref)) for s in statuses])


def _parse(request: tap_pb2.Stream) -> refs.StreamRef:
    try:
        return refs.ref_from_pb(request)
    except refs.InvalidRequest as exc:
        raise grpcutil.InvalidArgument(str(exc)) from None


class TapServicer(tap_pb2_grpc.TapServicer):
    def __init__(self, tap: Tap, *, max_watchers: int = MAX_WATCHERS) -> None:
        self._tap = tap
        self._max_watchers = max_watchers
        self.watchers = 0
        """Watch streams open now."""

    @grpcutil.map_errors(_log)
    async def Open(self, request: tap_pb2.Stream, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        ref = _parse(request)
        try:
            self._tap.open(ref)
        except AnotherTrench as exc:
            raise grpcutil.FailedPrecondition(str(exc)) from None
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Close(self, request: tap_pb2.Stream, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        self._tap.close(_parse(request))
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Watch(self, request: tap_pb2.Stream,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[tap_pb2.StreamResponse]:
        filt = refs.filter_from_pb(request)
        if self.watchers >= self._max_watchers:
            raise grpcutil.ResourceExhausted(f"watch: this TAPA already serves {self._max_watchers} watch streams "
                                             "(MERIDIO_MAX_WATCHERS, the limit); close some first")
        self.watchers += 1
        try:
            async for statuses in self._tap.watch(filt):
                yield statuses_to_pb(statuses)
        finally:
            self.watchers -= 1
