"""``meridio.proxy.v1.LinkService`` over gRPC: parse, call the forwarder, map errors to status codes.

==========================================================  =======================
bad target_id / interface_name                               ``INVALID_ARGUMENT``
credential unknown, expired, used, or its process exited;
no verified certificate identity (mutual TLS)                ``UNAUTHENTICATED``
target id linked from another namespace, or not the pod the
caller's certificate names (a TAPA of this node)             ``PERMISSION_DENIED``
interface name taken in the caller's namespace, or the
target is already linked under another name                  ``FAILED_PRECONDITION``
IPAM unreachable, bridge not addressed yet, kernel failure   ``UNAVAILABLE``
anything else (a bug)                                        ``INTERNAL`` (logged)
==========================================================  =======================
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.link import link_to_pb
from meridio.api.pb.meridio.proxy.v1 import link_pb2, link_pb2_grpc
from meridio.common import grpcutil
from meridio.common import identity as identitymod
from meridio.common import log as logmod
from meridio.common.retry import PermanentError, TemporaryError
from meridio.kernel import pins
from meridio.proxy import credentials, dataplane, names
from meridio.proxy.forwarder import Forwarder
from meridio.proxy.targets import PermissionDenied, Unauthenticated

__all__ = ["LinkServicer", "add_to_server", "status_for"]


def status_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, names.InvalidName):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, (Unauthenticated, grpcutil.Unauthenticated)):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, (PermissionDenied, grpcutil.PermissionDenied)):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, grpcutil.FailedPrecondition):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, (TemporaryError, dataplane.KernelError)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, PermanentError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def check_caller(caller: identitymod.Identity, target_id: str, node: str) -> None:
    """With mutual TLS, only a TAPA whose certificate names pod ``target_id`` (and, when it names a node,
    this proxy's ``node``) may connect, disconnect or watch that target's link."""
    who = f"{caller.component.value} {caller.pod}"  # identity segments: at most 63 characters
    if caller.component is not identitymod.Component.TAPA:
        raise PermissionDenied(f"{who} may not use the link service (only a TAPA)")
    if caller.pod != target_id:
        raise PermissionDenied(f"target_id {target_id!r}: the caller's certificate names pod {caller.pod!r}")
    if caller.node is not None and caller.node != node:
        raise PermissionDenied(f"{who} runs on node {caller.node!r}, this proxy serves node {node!r}")


class LinkServicer(link_pb2_grpc.LinkServiceServicer):
    def __init__(self, forwarder: Forwarder, creds: credentials.CredentialServer, *,
                 log: logmod.Logger = logmod.null, identities: bool = False, node: str = "") -> None:
        """``identities``: callers come over mutual TLS and are checked with :func:`check_caller`."""
        self._fwd = forwarder
        self._creds = creds
        self._log = log
        self._identities, self._node = identities, node

    def _authorise(self, context: grpc.aio.ServicerContext, target_id: str) -> None:
        if self._identities:
            check_caller(grpcutil.peer_identity(context), target_id, self._node)

    def _pinned(self, token: str) -> pins.PinnedNs:
        pinned = self._creds.take(token)
        if pinned is None:
            raise Unauthenticated("credential: unknown, expired or already used (get a fresh one from the "
                                  "credential socket)")
        return pinned

    async def Connect(self, request: link_pb2.ConnectRequest, context: grpc.aio.ServicerContext) -> link_pb2.Link:
        try:
            target_id = names.check_target_id(request.target_id)
            ifname = names.check_interface_name(request.interface_name)
            self._authorise(context, target_id)
            info = await self._fwd.connect(target_id, ifname, self._pinned(request.credential))
        except Exception as exc:  # noqa: BLE001 - every error is mapped to a status code
            await self._abort(context, "Connect", exc)
        return link_to_pb(info)

    async def Disconnect(self, request: link_pb2.DisconnectRequest,
                         context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        try:
            target_id = names.check_target_id(request.target_id)
            self._authorise(context, target_id)
            await self._fwd.disconnect(target_id, self._pinned(request.credential))
        except Exception as exc:  # noqa: BLE001 - every error is mapped to a status code
            await self._abort(context, "Disconnect", exc)
        return empty_pb2.Empty()

    async def Watch(self, request: link_pb2.WatchRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[link_pb2.Link]:
        try:
            target_id = names.check_target_id(request.target_id)
            self._authorise(context, target_id)
        except Exception as exc:  # noqa: BLE001
            await self._abort(context, "Watch", exc)
        async for info in self._fwd.watch(target_id):
            yield link_to_pb(info)

    async def _abort(self, context: grpc.aio.ServicerContext, rpc: str, exc: Exception) -> NoReturn:
        code = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            self._log.exception("rpcFailed", rpc=rpc, error=repr(exc))
            await context.abort(code, f"internal error in {rpc}: {exc.__class__.__name__}: {exc}")
        self._log.info("rpcRejected", rpc=rpc, code=code.name, error=str(exc))
        await context.abort(code, str(exc))
        raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def add_to_server(server: grpc.aio.Server, servicer: LinkServicer) -> None:
    link_pb2_grpc.add_LinkServiceServicer_to_server(servicer, server)
