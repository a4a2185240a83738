"""Asyncio client of the NSP (``nsp.v1.ConfigurationManager`` + ``nsp.v1.TargetRegistry``).

Every component talks to its trench's NSP through this class; it converts at the edge, so callers
only see :mod:`meridio.api.model` values::

    nsp = NspClient("127.0.0.1:7778", log=log)
    async for streams in nsp.watch_streams(model.Stream("", conduit)):
        ...                                    # a full list on subscribe and after every change
    await nsp.register(target)                 # TemporaryError if the NSP cannot be reached
    await nsp.close()

Watches never end by themselves: when the NSP is down or restarts they reconnect forever with
:class:`~meridio.common.retry.Backoff` (0.5 s doubling to 5 s by default) and yield the fresh list once
reconnected (the same list may therefore come twice). Only a request the NSP rejects
(``INVALID_ARGUMENT``...) ends a watch, with :class:`~meridio.common.retry.PermanentError`; closing the
client ends them quietly. The NSP sends a list only when the watcher's view changed.

Connectivity, as Meridio's ``NSPCli`` health sub-service: :attr:`NspClient.connected` is an
``asyncio.Event`` set while the channel is READY, and ``on_connectivity(bool)`` is called on every
change (e.g. ``lambda up: health.set_serving(health.NSP_CLI, up)``). It is tracked from the first call
(or :meth:`NspClient.connect`) on.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from meridio.api import model
from meridio.api.pb.nsp.v1 import configurationmanager_pb2_grpc, model_pb2, targetregistry_pb2_grpc
from meridio.common import grpcutil, tasks
from meridio.common import identity as identitymod
from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.common.retry import Backoff, PermanentError, TemporaryError

__all__ = ["NspClient", "default_backoff"]

T = TypeVar("T")


def default_backoff() -> Backoff:
    return Backoff(initial=0.5, cap=5.0)


class NspClient:
    def __init__(self, address: str, *, log: logmod.Logger = logmod.null, call_timeout: float = 5.0,
                 backoff: Callable[[], Backoff] = default_backoff,
                 on_connectivity: Callable[[bool], None] | None = None, tls: tlsmod.Tls | None = None) -> None:
        """``tls``: this component's certificate directory (mutual TLS); ``None`` only in insecure mode."""
        self.address = address
        self.call_timeout = call_timeout
        """Deadline of Register/Unregister, in seconds."""
        self.connected = asyncio.Event()
        self._log = log.bind(nsp=address)
        self._backoff = backoff
        self._on_connectivity = on_connectivity
        self._channels = grpcutil.RenewingChannel(address, tls=tls, server=identitymod.Component.NSP)
        self._monitor: asyncio.Task[Any] | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Create the channel and start tracking connectivity (done lazily by every call anyway)."""
        self._ensure_channel()

    def _ensure_channel(self) -> grpc.aio.Channel:
        if self._closed:
            raise PermanentError(f"NSP client for {self.address} is closed")
        try:
            channel = self._channels.get()
        except tlsmod.TlsError as exc:
            raise TemporaryError(f"NSP {self.address}: {exc}") from None
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(tasks.guard(self._track(), "nspConnectivity", self._log))
        return channel

    async def close(self) -> None:
        """Close the channel; running watches end (quietly)."""
        self._closed = True
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
        # Close the channel before waiting for the monitor: grpc.aio finishes a cancelled
        # wait_for_state_change only on the channel's next state change, and a channel failing its TLS
        # handshakes over and over may not change state again (the close is that change).
        await self._channels.close()
        if monitor is not None:
            await asyncio.wait({monitor}, timeout=2.0)
        self._report(False)

    async def __aenter__(self) -> NspClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _track(self) -> None:
        while True:
            # The channel may be replaced after a certificate rotation: look it up every round.
            try:
                channel = self._channels.get()
            except tlsmod.TlsError:
                channel = self._channels.current
            if channel is None:
                await asyncio.sleep(1.0)
                continue
            # Asking with try_to_connect moves an IDLE channel (peer gone) back to CONNECTING.
            state = channel.get_state(try_to_connect=True)
            self._report(state == grpc.ChannelConnectivity.READY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.wait_for_state_change(state), 5.0)

    def _report(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
            self._log.info("nspConnected")
        else:
            self.connected.clear()
            self._log.warning("nspDisconnected")
        if self._on_connectivity is not None:
            try:
                self._on_connectivity(up)
            except Exception as exc:  # noqa: BLE001 - a broken callback must not stop the tracking
                self._log.exception("nspConnectivityCallbackFailed", error=repr(exc))

    # --- target registry ------------------------------------------------------------------------

    async def register(self, target: model.Target) -> None:
        """Register or refresh ``target``. ``PermanentError`` if rejected, ``TemporaryError`` if unreachable."""
        stub = targetregistry_pb2_grpc.TargetRegistryStub(self._ensure_channel())
        await grpcutil.call_with_errors(f"register target at NSP {self.address}",
                                        stub.Register(model.target_to_pb(target), timeout=self.call_timeout))

    async def unregister(self, target: model.Target) -> None:
        """Remove ``target`` (unknown targets are fine). Errors as :meth:`register`."""
        stub = targetregistry_pb2_grpc.TargetRegistryStub(self._ensure_channel())
        await grpcutil.call_with_errors(f"unregister target at NSP {self.address}",
                                        stub.Unregister(model.target_to_pb(target), timeout=self.call_timeout))

    def watch_targets(self, filter: model.Target) -> AsyncIterator[list[model.Target]]:
        """Targets matching ``filter`` (status equal unless ANY, type equal, stream wildcards)."""
        return self._watch("targets", lambda ch: targetregistry_pb2_grpc.TargetRegistryStub(ch).Watch(
            model.target_to_pb(filter)), lambda r: [model.target_from_pb(t) for t in r.targets])

    # --- configuration --------------------------------------------------------------------------

    def _config_watch(self, what: str, method: str, request: Any, convert: Callable[[Any], T]) -> AsyncIterator[T]:
        return self._watch(what, lambda ch: getattr(configurationmanager_pb2_grpc.ConfigurationManagerStub(ch),
                                                    method)(request), convert)

    def watch_trench(self, filter: model.Trench | None = None) -> AsyncIterator[model.Trench | None]:
        """The trench, or ``None`` while no (matching) trench is configured."""
        return self._config_watch("trench", "WatchTrench", model.trench_to_pb(filter) or model_pb2.Trench(),
                                  lambda r: model.trench_from_pb(r.trench, r.HasField("trench")))

    def watch_conduits(self, filter: model.Conduit | None = None) -> AsyncIterator[list[model.Conduit]]:
        return self._config_watch("conduits", "WatchConduit", model.conduit_to_pb(filter) or model_pb2.Conduit(),
                                  lambda r: [model.conduit_from_pb(c) for c in r.conduits])  # type: ignore[misc]

    def watch_streams(self, filter: model.Stream | None = None) -> AsyncIterator[list[model.Stream]]:
        return self._config_watch("streams", "WatchStream", model.stream_to_pb(filter) or model_pb2.Stream(),
                                  lambda r: [model.stream_from_pb(s) for s in r.streams])  # type: ignore[misc]

    def watch_flows(self, filter: model.Flow | None = None) -> AsyncIterator[list[model.Flow]]:
        req = model.flow_to_pb(filter) if filter is not None else model_pb2.Flow()
        return self._config_watch("flows", "WatchFlow", req, lambda r: [model.flow_from_pb(f) for f in r.flows])

    def watch_vips(self, filter: model.Vip | None = None) -> AsyncIterator[list[model.Vip]]:
        req = model.vip_to_pb(filter) if filter is not None else model_pb2.Vip()
        return self._config_watch("vips", "WatchVip", req, lambda r: [model.vip_from_pb(v) for v in r.vips])

    def watch_attractors(self, filter: model.Attractor | None = None) -> AsyncIterator[list[model.Attractor]]:
        req = model.attractor_to_pb(filter) if filter is not None else model_pb2.Attractor()
        return self._config_watch("attractors", "WatchAttractor", req,
                                  lambda r: [model.attractor_from_pb(a) for a in r.attractors])

    def watch_gateways(self, filter: model.Gateway | None = None) -> AsyncIterator[list[model.Gateway]]:
        req = model.gateway_to_pb(filter) if filter is not None else model_pb2.Gateway()
        return self._config_watch("gateways", "WatchGateway", req,
                                  lambda r: [model.gateway_from_pb(g) for g in r.gateways])

    # --- the reconnecting stream ----------------------------------------------------------------

    async def _watch(self, what: str, open_call: Callable[[grpc.aio.Channel], Any],
                     convert: Callable[[Any], T]) -> AsyncIterator[T]:
        backoff = self._backoff()
        log = self._log.bind(watch=what)
        while not self._closed:
            try:
                channel = self._ensure_channel()
            except TemporaryError as exc:  # certificate files unusable right now
                log.warning("nspWatchFailed", error=str(exc), reason="tls")
                await asyncio.sleep(backoff.next_delay())
                continue
            call = open_call(channel)
            try:
                async for response in call:
                    backoff.reset()
                    yield convert(response)
                log.info("nspWatchEnded", reason="streamClosedByServer")
            except asyncio.CancelledError:
                # Closing the channel cancels its calls locally, which grpc reports as CancelledError:
                # end quietly then, but let a real cancellation of the consumer's task through.
                # A channel retired after a certificate rotation ends its calls the same way: reconnect.
                task = asyncio.current_task()
                if task is not None and not task.cancelling():
                    if self._closed:
                        return
                    if channel is not self._channels.current:
                        continue
                raise
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    return
                err = grpcutil.error_from_rpc(exc, f"watch {what} at NSP {self.address}")
                if isinstance(err, PermanentError):
                    log.error("nspWatchRejected", error=str(err))
                    raise err from None
                log.warning("nspWatchFailed", error=str(err), reason=exc.code().name)
            finally:
                call.cancel()
            if self._closed:
                return
            await asyncio.sleep(backoff.next_delay())

