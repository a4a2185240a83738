"""``ipam.v1.Ipam`` over gRPC: parse the request, call the registry, map errors to status codes.

Status codes (Meridio answers every error as UNKNOWN; the messages keep Meridio's wording first):

==========================================  ======================
bad request (nil/empty fields, ip family,   ``INVALID_ARGUMENT``
other trench, names that are no names or
longer than 253 characters)
a node not in ``IPAM_NODES``                ``FAILED_PRECONDITION``
``no more prefix available``                ``RESOURCE_EXHAUSTED``
conduit not announced by the NSP before     ``UNAVAILABLE``
the call's deadline; registry write failed
no verified identity (mutual TLS on)         ``UNAUTHENTICATED``
identity may not (:mod:`meridio.ipam.authz`) ``PERMISSION_DENIED``
anything else (a bug)                       ``INTERNAL`` (logged)
==========================================  ======================
"""
from __future__ import annotations

from typing import NoReturn

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.pb.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from meridio.common import bounds, grpcutil
from meridio.common import log as logmod
from meridio.common.grpcutil import FailedPrecondition
from meridio.common.retry import TemporaryError
from meridio.ipam import authz, tree
from meridio.ipam.registry import ChildRequest, Registry, RequestError
from meridio.ipam.store import IpamStoreError

__all__ = ["IpamServicer", "child_from_pb", "status_for"]


def child_from_pb(m: ipam_pb2.Child) -> ChildRequest:
    """Parse an ``ipam.v1.Child``; raise :class:`RequestError` naming the missing or empty field."""
    if not m.HasField("subnet"):
        raise RequestError("subnet cannot be nil: child.subnet is missing")
    subnet = m.subnet
    if not subnet.HasField("conduit"):
        raise RequestError("conduit cannot be nil: child.subnet.conduit is missing")
    if not subnet.conduit.HasField("trench"):
        raise RequestError("trench cannot be nil: child.subnet.conduit.trench is missing")
    for field, value in (("child.name", m.name), ("child.subnet.conduit.name", subnet.conduit.name),
                         ("child.subnet.conduit.trench.name", subnet.conduit.trench.name),
                         ("child.subnet.node", subnet.node)):
        if not value.strip():
            raise RequestError(f"{field} cannot be empty")
    # A child is named by its proxy (target ids: letters, digits, '.', '_', '-'); the others are
    # Kubernetes object names.
    bounds.check_length("child.name", m.name, bounds.MAX_NAME_CHARS, RequestError)
    if not m.name.isprintable():
        raise RequestError(f"child.name: {bounds.quote(m.name)} must be printable characters")
    for field, value in (("child.subnet.conduit.name", subnet.conduit.name),
                         ("child.subnet.conduit.trench.name", subnet.conduit.trench.name),
                         ("child.subnet.node", subnet.node)):
        bounds.check_name(field, value, RequestError)
    return ChildRequest(name=m.name, trench=subnet.conduit.trench.name, conduit=subnet.conduit.name,
                        node=subnet.node, family=int(subnet.ipFamily))


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code of an error raised while serving a request (see the module docstring)."""
    if isinstance(exc, RequestError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, (grpcutil.Unauthenticated, grpcutil.PermissionDenied)):
        return grpcutil.status_for(exc)
    if isinstance(exc, tree.NoMorePrefix):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, FailedPrecondition):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, (TemporaryError, IpamStoreError)):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


class IpamServicer(ipam_pb2_grpc.IpamServicer):
    def __init__(self, registry: Registry, *, log: logmod.Logger = logmod.null,
                 policy: authz.Policy | None = None) -> None:
        """``policy``: authorise by the caller's identity (mutual TLS); ``None`` only in insecure mode."""
        self._registry = registry
        self._log = log
        self._policy = policy

    def _child(self, request: ipam_pb2.Child, context: grpc.aio.ServicerContext) -> ChildRequest:
        child = child_from_pb(request)
        if self._policy is not None:
            self._policy.check(grpcutil.peer_identity(context), child)
        return child

    async def Allocate(self, request: ipam_pb2.Child, context: grpc.aio.ServicerContext) -> ipam_pb2.Prefix:
        try:
            child = self._child(request, context)
            # Wait for the conduit only as long as the caller does (Meridio waits without limit), and
            # less than the server's own limit on a call, so the answer says what was missing.
            remaining = context.time_remaining()
            wait = bounds.MAX_UNARY_SECONDS - 1 if remaining is None else min(remaining, bounds.MAX_UNARY_SECONDS - 1)
            allocation = await self._registry.allocate(child, timeout=wait)
        except Exception as exc:  # noqa: BLE001 - every error is mapped to a status code
            await self._abort(context, "Allocate", exc)
        return ipam_pb2.Prefix(address=allocation.address, prefixLength=allocation.prefix_length)

    async def Release(self, request: ipam_pb2.Child, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        try:
            self._registry.release(self._child(request, context))
        except Exception as exc:  # noqa: BLE001 - every error is mapped to a status code
            await self._abort(context, "Release", exc)
        return empty_pb2.Empty()

    async def _abort(self, context: grpc.aio.ServicerContext, rpc: str, exc: Exception) -> NoReturn:
        code = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            self._log.exception("rpcFailed", rpc=rpc, error=repr(exc))
            await context.abort(code, f"internal error in {rpc}: {exc.__class__.__name__}: {exc}")
        self._log.debug("rpcRejected", rpc=rpc, code=code.name, error=str(exc))
        await context.abort(code, str(exc))
        raise AssertionError("unreachable: context.abort raises")
