"""Thin gRPC servicers: ``nsp.v1.ConfigurationManager`` and ``nsp.v1.TargetRegistry``.

Each method decodes the request into :mod:`meridio.api.model` values, calls the core, encodes the
answer. Errors map to status codes through :func:`meridio.common.grpcutil.map_errors`: an invalid
target or filter (see :func:`meridio.nsp.registry.validate`), or one of another trench, is
``INVALID_ARGUMENT`` with a message naming the field and the rule; a target of a conduit or stream
this NSP's configuration does not have (yet) is ``FAILED_PRECONDITION`` (TAPA, LB and frontend retry
both); a database write that fails is ``UNAVAILABLE`` (nothing was changed). With mutual TLS,
Register and Unregister are authorised by the caller's identity (:mod:`meridio.nsp.authz`): no
identity is ``UNAUTHENTICATED``, a rule broken is ``PERMISSION_DENIED``, and nothing changes. A watch
beyond the :class:`~meridio.nsp.watchers.Quota` is ``RESOURCE_EXHAUSTED``. Watch streams end (status
OK) when the server shuts down; clients reconnect.

Every watcher of one filter gets the same view object, so :class:`_Encoder` builds its response
message once per distinct view, not once per watcher (2000 watchers of one stream: one message).
"""
from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio
from google.protobuf import empty_pb2

from meridio.api import model
from meridio.api.pb.nsp.v1 import configurationmanager_pb2_grpc, model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from meridio.common import bounds, grpcutil
from meridio.common import log as logmod
from meridio.nsp import authz, config, registry, targets, watchers

__all__ = ["ConfigurationManagerServicer", "TargetRegistryServicer", "decode_target", "add_to_server"]

_log = logmod.get("nsp")


async def _drain(box: watchers.Mailbox[Any], unsubscribe: Callable[[Any], None],
                 log: logmod.Logger) -> AsyncIterator[Any]:
    """Yield the watcher's views until its mailbox closes; always unsubscribe (client gone, shutdown)."""
    try:
        while True:
            try:
                yield await box.get()
            except watchers.Closed:
                return
    finally:
        unsubscribe(box)
        log.debug("watchEnded")


class _Encoder:
    """Response messages of the last views, by view identity (views are shared between the watchers of
    one filter; the cache holds the view itself, so its ``id`` is not reused while cached)."""

    SIZE = 256

    def __init__(self) -> None:
        self._cache: collections.OrderedDict[int, tuple[object, Any]] = collections.OrderedDict()

    def encode(self, view: Any, build: Callable[[Any], Any]) -> Any:
        hit = self._cache.get(id(view))
        if hit is not None and hit[0] is view:
            self._cache.move_to_end(id(view))
            return hit[1]
        message = build(view)
        self._cache[id(view)] = (view, message)
        if len(self._cache) > self.SIZE:
            self._cache.popitem(last=False)
        return message


class ConfigurationManagerServicer(configurationmanager_pb2_grpc.ConfigurationManagerServicer):
    def __init__(self, manager: config.ConfigurationManager, *, quota: watchers.Quota | None = None,
                 log: logmod.Logger = logmod.null) -> None:
        self._manager = manager
        self._quota = quota if quota is not None else watchers.Quota()
        self._encoder = _Encoder()
        self._log = log

    async def _watch(self, kind: config.Kind, flt: Any, context: grpc.aio.ServicerContext,
                     build: Callable[[Any], Any]) -> AsyncIterator[Any]:
        _check_filter(flt)
        peer = context.peer() or ""
        self._quota.acquire(peer)
        try:
            log = self._log.bind(kind=kind.value, peer=peer)
            log.debug("watchStarted", filter=bounds.quote(repr(flt), 200))
            async for view in _drain(self._manager.subscribe(kind, flt), self._manager.unsubscribe, log):
                yield self._encoder.encode(view, build)
        finally:
            self._quota.release(peer)

    @grpcutil.map_errors(_log)
    async def WatchTrench(self, request: model_pb2.Trench, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[model_pb2.TrenchResponse]:
        async for message in self._watch(config.Kind.TRENCH, model.trench_from_pb(request), context,
                                         lambda t: model_pb2.TrenchResponse(trench=model.trench_to_pb(t))):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchConduit(self, request: model_pb2.Conduit, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[model_pb2.ConduitResponse]:
        async for message in self._watch(config.Kind.CONDUIT, model.conduit_from_pb(request), context, lambda items:
                                         model_pb2.ConduitResponse(conduits=_present(model.conduit_to_pb, items))):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchStream(self, request: model_pb2.Stream, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[model_pb2.StreamResponse]:
        async for message in self._watch(config.Kind.STREAM, model.stream_from_pb(request), context, lambda items:
                                         model_pb2.StreamResponse(streams=_present(model.stream_to_pb, items))):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchFlow(self, request: model_pb2.Flow, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[model_pb2.FlowResponse]:
        async for message in self._watch(config.Kind.FLOW, model.flow_from_pb(request), context, lambda items:
                                         model_pb2.FlowResponse(flows=[model.flow_to_pb(x) for x in items])):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchVip(self, request: model_pb2.Vip, context: grpc.aio.ServicerContext
                       ) -> AsyncIterator[model_pb2.VipResponse]:
        async for message in self._watch(config.Kind.VIP, model.vip_from_pb(request), context, lambda items:
                                         model_pb2.VipResponse(vips=[model.vip_to_pb(x) for x in items])):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchAttractor(self, request: model_pb2.Attractor, context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[model_pb2.AttractorResponse]:
        async for message in self._watch(config.Kind.ATTRACTOR, model.attractor_from_pb(request), context, lambda items:
                                         model_pb2.AttractorResponse(attractors=[model.attractor_to_pb(x) for x in items])):
            yield message

    @grpcutil.map_errors(_log)
    async def WatchGateway(self, request: model_pb2.Gateway, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[model_pb2.GatewayResponse]:
        async for message in self._watch(config.Kind.GATEWAY, model.gateway_from_pb(request), context, lambda items:
                                         model_pb2.GatewayResponse(gateways=[model.gateway_to_pb(x) for x in items])):
            yield message


def _present(encode: Callable[[Any], Any], items: Any) -> list[Any]:
    return [p for p in map(encode, items) if p is not None]


def _check_filter(flt: Any) -> None:
    """A configuration watch filter: every name in it (the object's and its parents') is a name or empty."""
    for field, name in _filter_names(flt, "filter"):
        bounds.check_name(f"{field}.name", name, registry.InvalidTarget, allow_empty=True)


def _filter_names(obj: Any, field: str) -> list[tuple[str, str]]:
    if obj is None:
        return []
    names = [(field, obj.name)]
    for parent in ("trench", "conduit", "stream"):
        names += _filter_names(getattr(obj, parent, None), f"{field}.{parent}")
    return names


def decode_target(m: targetregistry_pb2.Target) -> model.Target:
    """The model target of a request; unknown enum values are :class:`~meridio.nsp.registry.InvalidTarget`."""
    if m.status not in model.TargetStatus._value2member_map_:
        raise registry.InvalidTarget(f"target.status: unknown value {m.status} "
                                     f"(must be one of {', '.join(s.name for s in model.TargetStatus)})")
    if m.type not in model.TargetType._value2member_map_:
        raise registry.InvalidTarget(f"target.type: unknown value {m.type} "
                                     f"(must be one of {', '.join(t.name for t in model.TargetType)})")
    return model.target_from_pb(m)


class TargetRegistryServicer(targetregistry_pb2_grpc.TargetRegistryServicer):
    def __init__(self, registry_: targets.Targets, *, config: Callable[[], model.Configuration] | None = None,
                 quota: watchers.Quota | None = None, log: logmod.Logger = logmod.null,
                 policy: authz.Policy | None = None) -> None:
        """``policy``: authorise changes by the caller's identity (mutual TLS); ``None`` only in insecure mode."""
        self._targets = registry_
        self._config = config or model.Configuration
        self._quota = quota if quota is not None else watchers.Quota()
        self._encoder = _Encoder()
        self._log = log
        self._policy = policy

    def _authorise(self, context: grpc.aio.ServicerContext, action: authz.Action, target: model.Target) -> str | None:
        """The caller's identity URI once it may do ``action`` (raises otherwise); ``None`` without a policy."""
        if self._policy is None:
            return None
        caller = grpcutil.peer_identity(context)
        try:
            self._policy.check(caller, action, target, owner=self._targets.owner_of(target))
        except grpcutil.PermissionDenied as exc:
            self._log.warning("targetChangeRefused", action=action.value, caller=caller.uri, error=str(exc))
            raise
        return caller.uri

    @grpcutil.map_errors(_log)
    async def Register(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                       ) -> empty_pb2.Empty:
        target = decode_target(request)
        registry.validate(target)
        owner = self._authorise(context, authz.Action.REGISTER, target)
        registry.check_scope(target, self._config())
        self._targets.register(target, owner=owner)
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Unregister(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                         ) -> empty_pb2.Empty:
        # Not scope-checked: the entry of a stream removed from the configuration must still go.
        target = decode_target(request)
        registry.validate_filter(target)
        self._authorise(context, authz.Action.UNREGISTER, target)
        self._targets.unregister(target)
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Watch(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[targetregistry_pb2.TargetResponse]:
        flt = decode_target(request)
        registry.validate_filter(flt)
        peer = context.peer() or ""
        self._quota.acquire(peer)  # before subscribing: a refused watch leaves nothing behind
        try:
            log = self._log.bind(kind="target", peer=peer)
            log.debug("watchStarted", filter=bounds.quote(repr(flt), 200))
            async for items in _drain(self._targets.subscribe(flt), self._targets.unsubscribe, log):
                yield self._encoder.encode(items, _targets_response)
        finally:
            self._quota.release(peer)


def _targets_response(items: tuple[model.Target, ...]) -> targetregistry_pb2.TargetResponse:
    return targetregistry_pb2.TargetResponse(targets=[model.target_to_pb(t) for t in items])


def add_to_server(server: grpc.aio.Server, manager: config.ConfigurationManager, registry_: targets.Targets,
                  *, quota: watchers.Quota | None = None, log: logmod.Logger = logmod.null,
                  policy: authz.Policy | None = None) -> None:
    """Both servicers on ``server``; they share one watch ``quota`` (default :class:`~watchers.Quota`)."""
    quota = quota if quota is not None else watchers.Quota()
    configurationmanager_pb2_grpc.add_ConfigurationManagerServicer_to_server(
        ConfigurationManagerServicer(manager, quota=quota, log=log), server)
    targetregistry_pb2_grpc.add_TargetRegistryServicer_to_server(
        TargetRegistryServicer(registry_, config=lambda: manager.config, quota=quota, log=log, policy=policy), server)
