"""Thin gRPC servicers: ``nsp.v1.ConfigurationManager`` and ``nsp.v1.TargetRegistry``.

Each method decodes the request into :mod:`meridio.api.model` values, calls the core, encodes the
answer. Errors map to status codes through :func:`meridio.common.grpcutil.map_errors`: an invalid
target is ``INVALID_ARGUMENT`` with a message naming the field and the rule; a database write that
fails is ``UNAVAILABLE`` (nothing was changed). With mutual TLS, Register and Unregister are
authorised by the caller's identity (:mod:`meridio.nsp.authz`): no identity is ``UNAUTHENTICATED``, a
rule broken is ``PERMISSION_DENIED``, and nothing changes. Watch streams end (status OK) when the server shuts
down; clients reconnect.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio
from google.protobuf import empty_pb2

from meridio.api import model
from meridio.api.pb.nsp.v1 import configurationmanager_pb2_grpc, model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from meridio.common import grpcutil
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


class ConfigurationManagerServicer(configurationmanager_pb2_grpc.ConfigurationManagerServicer):
    def __init__(self, manager: config.ConfigurationManager, *, log: logmod.Logger = logmod.null) -> None:
        self._manager = manager
        self._log = log

    def _watch(self, kind: config.Kind, flt: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        log = self._log.bind(kind=kind.value, peer=context.peer())
        log.debug("watchStarted", filter=repr(flt))
        return _drain(self._manager.subscribe(kind, flt), self._manager.unsubscribe, log)

    @grpcutil.map_errors(_log)
    async def WatchTrench(self, request: model_pb2.Trench, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[model_pb2.TrenchResponse]:
        async for trench in self._watch(config.Kind.TRENCH, model.trench_from_pb(request), context):
            yield model_pb2.TrenchResponse(trench=model.trench_to_pb(trench))

    @grpcutil.map_errors(_log)
    async def WatchConduit(self, request: model_pb2.Conduit, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[model_pb2.ConduitResponse]:
        async for items in self._watch(config.Kind.CONDUIT, model.conduit_from_pb(request), context):
            yield model_pb2.ConduitResponse(conduits=[p for p in map(model.conduit_to_pb, items) if p is not None])

    @grpcutil.map_errors(_log)
    async def WatchStream(self, request: model_pb2.Stream, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[model_pb2.StreamResponse]:
        async for items in self._watch(config.Kind.STREAM, model.stream_from_pb(request), context):
            yield model_pb2.StreamResponse(streams=[p for p in map(model.stream_to_pb, items) if p is not None])

    @grpcutil.map_errors(_log)
    async def WatchFlow(self, request: model_pb2.Flow, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[model_pb2.FlowResponse]:
        async for items in self._watch(config.Kind.FLOW, model.flow_from_pb(request), context):
            yield model_pb2.FlowResponse(flows=[model.flow_to_pb(f) for f in items])

    @grpcutil.map_errors(_log)
    async def WatchVip(self, request: model_pb2.Vip, context: grpc.aio.ServicerContext
                       ) -> AsyncIterator[model_pb2.VipResponse]:
        async for items in self._watch(config.Kind.VIP, model.vip_from_pb(request), context):
            yield model_pb2.VipResponse(vips=[model.vip_to_pb(v) for v in items])

    @grpcutil.map_errors(_log)
    async def WatchAttractor(self, request: model_pb2.Attractor, context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[model_pb2.AttractorResponse]:
        async for items in self._watch(config.Kind.ATTRACTOR, model.attractor_from_pb(request), context):
            yield model_pb2.AttractorResponse(attractors=[model.attractor_to_pb(a) for a in items])

    @grpcutil.map_errors(_log)
    async def WatchGateway(self, request: model_pb2.Gateway, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[model_pb2.GatewayResponse]:
        async for items in self._watch(config.Kind.GATEWAY, model.gateway_from_pb(request), context):
            yield model_pb2.GatewayResponse(gateways=[model.gateway_to_pb(g) for g in items])


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
    def __init__(self, registry_: targets.Targets, *, log: logmod.Logger = logmod.null,
                 policy: authz.Policy | None = None) -> None:
        """``policy``: authorise changes by the caller's identity (mutual TLS); ``None`` only in insecure mode."""
        self._targets = registry_
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
        owner = self._authorise(context, authz.Action.REGISTER, target)
        self._targets.register(target, owner=owner)
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Unregister(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                         ) -> empty_pb2.Empty:
        target = decode_target(request)
        self._authorise(context, authz.Action.UNREGISTER, target)
        self._targets.unregister(target)
        return empty_pb2.Empty()

    @grpcutil.map_errors(_log)
    async def Watch(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[targetregistry_pb2.TargetResponse]:
        flt = decode_target(request)
        log = self._log.bind(kind="target", peer=context.peer())
        log.debug("watchStarted", filter=repr(flt))
        async for items in _drain(self._targets.subscribe(flt), self._targets.unsubscribe, log):
            yield targetregistry_pb2.TargetResponse(targets=[model.target_to_pb(t) for t in items])


def add_to_server(server: grpc.aio.Server, manager: config.ConfigurationManager, registry_: targets.Targets,
                  *, log: logmod.Logger = logmod.null, policy: authz.Policy | None = None) -> None:
    configurationmanager_pb2_grpc.add_ConfigurationManagerServicer_to_server(
        ConfigurationManagerServicer(manager, log=log), server)
    targetregistry_pb2_grpc.add_TargetRegistryServicer_to_server(
        TargetRegistryServicer(registry_, log=log, policy=policy), server)
