"""``grpc.health.v1`` with Meridio's probe model, reusable by every component.

Meridio (``pkg/health``) exposes three *probe services*, ``Startup``, ``Readiness`` and ``Liveness``,
each aggregating named *sub-services* (``NSPCli``, ``Egress``, ``Stream``, ...). A probe service is
SERVING only while every one of its sub-services is SERVING; a probe with no sub-services is set
directly. Sub-services start NOT_SERVING when registered. The overall service ``""`` is SERVING while
the process runs. A failed probe check logs the state of each of its sub-services.

Usage (one :class:`Health` per process, shared by its servers)::

    health = Health({LIVENESS: [NSP]}, log=log)
    health.add_to(server)                      # the component's main gRPC server
    await health.serve("unix:///tmp/health.sock")  # optional, Meridio's probe socket
    health.set_serving(NSP)                    # when the component is up
    health.set_serving(NSP, False)             # when it is not

The state is plain synchronous code (:class:`ProbeModel`), so callbacks may flip a sub-service
from anywhere on the loop without awaiting.
"""
from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Iterable, Mapping

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.common import grpcutil
from meridio.common import log as logmod

__all__ = [
    "STARTUP", "READINESS", "LIVENESS", "PROBES", "IPAM", "IPAM_CLI", "NSP_CLI", "EGRESS",
    "NSM_ENDPOINT", "STREAM", "FLOW", "NSP", "AMBASSADOR", "DEFAULT_ADDRESS", "Status", "ProbeModel",
    "Health", "check",
]

STARTUP = "Startup"
READINESS = "Readiness"
LIVENESS = "Liveness"
PROBES = (STARTUP, READINESS, LIVENESS)

# Sub-service names, as Meridio's pkg/health/const.go spells them (probes may reference them).
IPAM = "IPAM"
IPAM_CLI = "IPAMCli"
NSP_CLI = "NSPCli"
EGRESS = "Egress"
NSM_ENDPOINT = "NSMEndpoint"
STREAM = "Stream"
FLOW = "Flow"
NSP = "NSP"
AMBASSADOR = "Ambassador"

DEFAULT_ADDRESS = "unix:///tmp/health.sock"
"""Meridio's probe socket (``/bin/grpc_health_probe -addr=unix:///tmp/health.sock -service=...``)."""


class Status(enum.IntEnum):
    """``grpc.health.v1.HealthCheckResponse.ServingStatus``."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


class ProbeModel:
    """The pure state: statuses of services and which sub-services each probe aggregates."""

    def __init__(self, probes: Mapping[str, Iterable[str]] | None = None) -> None:
        self._status: dict[str, Status] = {"": Status.SERVING}
        self._subs: dict[str, set[str]] = {}
        for probe, subs in (probes or {}).items():
            self.register(probe, *subs)

    def register(self, probe: str, *subs: str) -> None:
        """Make ``probe`` aggregate ``subs`` (added to any registered before); all start NOT_SERVING."""
        self._subs.setdefault(probe, set()).update(subs)
        self._status[probe] = Status.NOT_SERVING
        for sub in subs:
            self._status[sub] = Status.NOT_SERVING

    def status(self, service: str) -> Status | None:
        """The status of ``service``, or ``None`` if it was never registered or set."""
        return self._status.get(service)

    def sub_services(self, probe: str) -> dict[str, Status]:
        return {sub: self._status.get(sub, Status.SERVICE_UNKNOWN) for sub in sorted(self._subs.get(probe, ()))}

    def set(self, service: str, serving: bool) -> dict[str, Status]:
        """Set a (sub-)service; returns every service whose status changed, probes included.

        Setting a probe that aggregates sub-services is ignored (its status is derived), as in Meridio.
        """
        if self._subs.get(service):
            return {}
        before = dict(self._status)
        self._status[service] = Status.SERVING if serving else Status.NOT_SERVING
        for probe, subs in self._subs.items():
            if service in subs:
                ok = all(self._status.get(s) == Status.SERVING for s in subs)
                self._status[probe] = Status.SERVING if ok else Status.NOT_SERVING
        return {k: v for k, v in self._status.items() if before.get(k) != v}

    def shutdown(self) -> dict[str, Status]:
        """Everything NOT_SERVING (the process is going away)."""
        changed = {k: Status.NOT_SERVING for k, v in self._status.items() if v != Status.NOT_SERVING}
        self._status.update(changed)
        return changed


class Health(health_pb2_grpc.HealthServicer):
    """A ``grpc.health.v1.Health`` servicer over a :class:`ProbeModel`."""

    def __init__(self, probes: Mapping[str, Iterable[str]] | None = None, *,
                 log: logmod.Logger = logmod.null) -> None:
        self.model = ProbeModel(probes)
        self._log = log
        self._changed = asyncio.Event()
        self._servers: list[grpc.aio.Server] = []
        self._shut_down = False

    # --- state ----------------------------------------------------------------------------------

    def register(self, probe: str, *subs: str) -> None:
        self.model.register(probe, *subs)
        self._notify()

    def set_serving(self, service: str, serving: bool = True) -> None:
        """Set ``service`` SERVING (or NOT_SERVING with ``serving=False``); probes follow."""
        if self._shut_down:
            return
        changed = self.model.set(service, serving)
        if changed:
            self._log.debug("healthChanged", service=service, serving=serving,
                            changed={k: v.name for k, v in changed.items()})
            self._notify()

    def status(self, service: str) -> Status | None:
        return self.model.status(service)

    def shutdown(self) -> None:
        """All services NOT_SERVING from now on (later :meth:`set_serving` calls are ignored)."""
        self._shut_down = True
        if self.model.shutdown():
            self._notify()

    def _notify(self) -> None:
        # Swap the event first so a watcher that wakes up waits on the new one.
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    # --- serving --------------------------------------------------------------------------------

    def add_to(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    async def serve(self, address: str = DEFAULT_ADDRESS) -> grpc.aio.Server:
        """Start a dedicated server for this health service on ``address``; stopped by :meth:`stop`."""
        server = grpcutil.create_server()
        self.add_to(server)
        grpcutil.add_listener(server, address)
        await server.start()
        self._servers.append(server)
        return server

    async def stop(self, grace: float | None = 0.5) -> None:
        self.shutdown()
        for server in self._servers:
            await server.stop(grace)
        self._servers.clear()

    # --- grpc.health.v1 -------------------------------------------------------------------------

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        status = self.model.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        assert status is not None
        if request.service in PROBES and status != Status.SERVING:
            self._log.info("probeFailed", service=request.service, status=status.name,
                           subServices={k: v.name for k, v in self.model.sub_services(request.service).items()})
        return health_pb2.HealthCheckResponse(status=int(status))

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: Status | None = None
        while True:
            changed = self._changed  # captured before reading, so no change can be missed
            status = self.model.status(request.service) or Status.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=int(status))
                last = status
            await changed.wait()


async def check(address: str, service: str = "", timeout: float = 1.0) -> Status:
    """Ask the health service at ``address`` (``host:port`` or ``unix:PATH``) about ``service``.

    Returns :attr:`Status.SERVICE_UNKNOWN` for an unknown service; raises ``TemporaryError`` if the
    server cannot be reached within ``timeout`` seconds.
    """
    async with grpcutil.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return Status.SERVICE_UNKNOWN
            raise grpcutil.error_from_rpc(exc, f"health check of {service!r} at {address}") from None
        return Status(resp.status)
