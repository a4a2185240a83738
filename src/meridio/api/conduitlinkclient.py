"""Client of an LB replica's ConduitLink service, for the proxy: ask the replica to make (or remove)
its end of a cross-node conduit link (:mod:`meridio.loadbalancer.conduitlink` serves it).

The replica is reached over the pod network at the address and port its ``LOADBALANCER`` target
announces, with mutual TLS (the LB's certificate is checked as ``lb.meridio.local``)::

    reply = await conduitlinkclient.connect("10.244.1.4", 7779, ConnectArgs(...), tls=tls)
    reply.interface_name, reply.local

Errors: :class:`VniTaken` when the replica already uses the VNI (pick the next one),
:class:`~meridio.common.retry.TemporaryError` when it cannot be reached or cannot serve now,
:class:`~meridio.common.retry.PermanentError` when it refuses the request (the message says why).
"""
from __future__ import annotations

import dataclasses
import ipaddress

import grpc
import grpc.aio

from meridio.api.pb.meridio.loadbalancer.v1 import conduitlink_pb2, conduitlink_pb2_grpc
from meridio.common import grpcutil, identity
from meridio.common import tls as tlsmod
from meridio.common.retry import TemporaryError

__all__ = ["ConnectArgs", "Reply", "VniTaken", "connect", "disconnect", "target"]


class VniTaken(TemporaryError):
    """The replica has another tunnel with this VNI: derive the next one and ask again."""


@dataclasses.dataclass(frozen=True)
class ConnectArgs:
    trench: str
    conduit: str
    node: str
    vni: int
    remote: str
    """The proxy's pod address (the tunnel's far end, seen from the LB)."""
    addresses: tuple[str, ...]
    mtu: int


@dataclasses.dataclass(frozen=True)
class Reply:
    interface_name: str
    local: str


def target(host: str, port: int) -> str:
    """A gRPC target for ``host`` (an IPv6 address gets brackets) and ``port``."""
    return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"


async def _call(host: str, port: int, method: str, request: object, *, tls: tlsmod.Tls | None,
                timeout: float) -> object:
    address = target(host, port)
    try:
        channel = grpcutil.channel(address, tls=tls, server=identity.Component.LB)
    except tlsmod.TlsError as exc:
        raise TemporaryError(f"LB {address}: {exc}") from None
    async with channel:
        try:
            return await getattr(conduitlink_pb2_grpc.ConduitLinkStub(channel), method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise VniTaken(f"{method.lower()} at LB {address}: {exc.details()}") from None
            raise grpcutil.error_from_rpc(exc, f"{method.lower()} at LB {address}") from None


async def connect(host: str, port: int, args: ConnectArgs, *, tls: tlsmod.Tls | None,
                  timeout: float = 10.0) -> Reply:
    reply = await _call(host, port, "Connect", conduitlink_pb2.ConnectRequest(
        trench=args.trench, conduit=args.conduit, node=args.node, vni=args.vni, remote=args.remote,
        addresses=list(args.addresses), mtu=args.mtu), tls=tls, timeout=timeout)
    assert isinstance(reply, conduitlink_pb2.ConnectResponse)
    return Reply(reply.interface_name, reply.local)


async def disconnect(host: str, port: int, *, trench: str, conduit: str, node: str, tls: tlsmod.Tls | None,
                     timeout: float = 1.5) -> None:
    """Best effort on the caller's side: short, since a replica that went away cannot answer (the proxy
    holds its state lock meanwhile)."""
    await _call(host, port, "Disconnect", conduitlink_pb2.DisconnectRequest(trench=trench, conduit=conduit, node=node),
                tls=tls, timeout=timeout)
