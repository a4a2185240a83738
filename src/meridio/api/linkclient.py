"""Client of the proxy's link service, for the TAPA: connect *this* process's namespace to a conduit
(replies are :class:`~meridio.api.link.Link`).

The proxy of a node and conduit serves ``meridio.proxy.v1.LinkService`` on a unix socket (say
``/run/meridio/trench-a/conduit-a/node-1/link.sock``) with its credential socket beside it
(``link.sock.cred``). Every Connect/Disconnect first fetches a one-time credential from the credential
socket: the caller passes a descriptor of its own network namespace there (``SCM_RIGHTS``), which the
proxy checks against the pid the socket itself tells where that pid is visible, so the link always lands
in the namespace of the process (thread) calling these functions::

    link = await linkclient.connect("/run/meridio/trench-a/conduit-a/node-1", "target-a-1", "nsm-0")
    link.addresses   # ('172.16.1.6/24', 'fd00:0:0:1::6/64')
    async for link in linkclient.watch(path, "target-a-1"): ...   # now and after every change
    await linkclient.disconnect(path, "target-a-1")

``socket`` may be the directory holding ``link.sock`` or the socket path itself. Errors:
:class:`~meridio.common.retry.TemporaryError` when the proxy cannot be reached or cannot serve now
(retry), :class:`~meridio.common.retry.PermanentError` when it refuses the request (the message says why);
either carries the gRPC code as ``status_code`` when the proxy answered.
"""
from __future__ import annotations

import asyncio
import os
import socket as socketmod
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from meridio.api.link import CREDENTIAL_REQUEST, Link, link_from_pb
from meridio.api.pb.meridio.proxy.v1 import link_pb2, link_pb2_grpc
from meridio.common import grpcutil, identity
from meridio.common import tls as tlsmod
from meridio.common.retry import TemporaryError

__all__ = ["SOCKET_NAME", "Link", "connect", "credential", "disconnect", "socket_paths", "watch"]

SOCKET_NAME = "link.sock"


def socket_paths(socket: str) -> tuple[str, str]:
    """(gRPC socket, credential socket) for a directory or a socket path; ``unix:`` prefixes allowed."""
    path = grpcutil.unix_path(socket) or socket
    if os.path.isdir(path):
        path = os.path.join(path, SOCKET_NAME)
    return path, path + ".cred"


_MAX_ANSWER = 512


async def credential(cred_path: str, timeout: float = 5.0) -> str:
    """A one-time credential for this thread's network namespace (passed to the proxy as a descriptor)."""
    try:
        return await asyncio.wait_for(_credential(cred_path), timeout)
    except (TimeoutError, OSError) as exc:
        raise TemporaryError(f"credential socket {cred_path}: {exc or 'no answer in time'}") from None


async def _credential(cred_path: str) -> str:
    loop = asyncio.get_running_loop()
    with socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM | socketmod.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, cred_path)
        # The descriptor of what this very thread runs in; closed as soon as it is sent (the proxy holds
        # its own copy).
        ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sent = socketmod.send_fds(sock, [CREDENTIAL_REQUEST], [ns_fd])
        finally:
            os.close(ns_fd)
        if sent != len(CREDENTIAL_REQUEST):
            raise OSError("the request was cut short")
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < _MAX_ANSWER:
            chunk = await loop.sock_recv(sock, _MAX_ANSWER - len(answer))
            if not chunk:
                break
            answer += chunk
    line = answer.decode(errors="replace").strip()
    status, _, rest = line.partition(" ")
    if status != "ok" or not rest:
        raise TemporaryError(f"credential socket {cred_path} refused: {rest or line or 'no answer'}")
    return rest


def _error(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """The project error for a failed call, with the gRPC code kept as ``status_code``."""
    err = grpcutil.error_from_rpc(exc, what)
    err.status_code = exc.code()  # type: ignore[attr-defined]
    return err


def _channel(grpc_path: str, tls: tlsmod.Tls | None) -> grpc.aio.Channel:
    try:
        return grpcutil.channel(f"unix:{grpc_path}", tls=tls, server=identity.Component.PROXY)
    except tlsmod.TlsError as exc:
        raise TemporaryError(f"proxy {grpc_path}: {exc}") from None


async def _unary(socket: str, what: str, call: str, request: object, timeout: float,
                 tls: tlsmod.Tls | None) -> object:
    grpc_path, _ = socket_paths(socket)
    async with _channel(grpc_path, tls) as channel:
        method = getattr(link_pb2_grpc.LinkServiceStub(channel), call)
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"{what} at proxy {grpc_path}") from None


async def connect(socket: str, target_id: str, interface_name: str, *, timeout: float = 15.0,
                  tls: tlsmod.Tls | None = None) -> Link:
    """Link this process's network namespace (idempotent per ``target_id``)."""
    _, cred_path = socket_paths(socket)
    token = await credential(cred_path)
    reply = await _unary(socket, "connect", "Connect", link_pb2.ConnectRequest(
        target_id=target_id, credential=token, interface_name=interface_name), timeout, tls)
    assert isinstance(reply, link_pb2.Link)
    return link_from_pb(reply)


async def disconnect(socket: str, target_id: str, *, timeout: float = 15.0, tls: tlsmod.Tls | None = None) -> None:
    """Remove the link of ``target_id`` (it must be this namespace's)."""
    _, cred_path = socket_paths(socket)
    token = await credential(cred_path)
    await _unary(socket, "disconnect", "Disconnect",
                 link_pb2.DisconnectRequest(target_id=target_id, credential=token), timeout, tls)


async def watch(socket: str, target_id: str, *, tls: tlsmod.Tls | None = None) -> AsyncIterator[Link]:
    """The link of ``target_id`` now and after every change; ends with ``TemporaryError`` if the proxy
    goes away (the caller decides whether to watch again)."""
    grpc_path, _ = socket_paths(socket)
    async with _channel(grpc_path, tls) as channel:
        call = link_pb2_grpc.LinkServiceStub(channel).Watch(link_pb2.WatchRequest(target_id=target_id))
        try:
            async for reply in call:
                yield link_from_pb(reply)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"watch at proxy {grpc_path}") from None
        finally:
            call.cancel()
        raise TemporaryError(f"watch at proxy {grpc_path}: the proxy ended the stream")


