"""The example target's TCP and UDP servers (asyncio; host adapter of :mod:`meridio.target.replies`).

One listening socket per port, dual-stack on ``::`` (IPv4 clients too) when the namespace has IPv6,
else IPv4 only. Memory is bounded: at most ``max_connections`` TCP connections at a time (more are
closed at once), echo in chunks with flow control, UDP replies never queued (a reply the socket cannot
take now is dropped, as UDP may).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from meridio.common import log as logmod
from meridio.target import replies

__all__ = ["ExampleTarget", "listen_socket"]

_CHUNK = 65536


def listen_socket(kind: socket.SocketKind, port: int) -> socket.socket:
    """A bound socket on ``[::]:port`` (dual-stack) or, without IPv6, ``0.0.0.0:port``."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            _options(sock, kind)
            sock.bind(("::", port))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise
    except OSError as exc:
        if exc.errno != errno.EAFNOSUPPORT:
            raise
    sock = socket.socket(socket.AF_INET, kind)
    try:
        _options(sock, kind)
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def _options(sock: socket.socket, kind: socket.SocketKind) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if kind == socket.SOCK_DGRAM:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, replies.IP_PKTINFO, 1)
    sock.setblocking(False)


class ExampleTarget:
    """Serves ``tcp_ports`` and ``udp_ports`` until :meth:`close`."""

    def __init__(self, name: str, *, max_connections: int = 10_000, log: logmod.Logger = logmod.null) -> None:
        self.name = name
        self.max_connections = max_connections
        self.connections = 0
        self._log = log
        self._servers: list[asyncio.base_events.Server] = []
        self._udp: list[socket.socket] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, tcp_ports: tuple[int, ...], udp_ports: tuple[int, ...]) -> None:
        loop = asyncio.get_running_loop()
        for port in tcp_ports:
            sock = listen_socket(socket.SOCK_STREAM, port)
            self._servers.append(await asyncio.start_server(self._tcp, sock=sock, backlog=1024,
                                                            limit=_CHUNK))
        for port in udp_ports:
            sock = listen_socket(socket.SOCK_DGRAM, port)
            self._udp.append(sock)
            loop.add_reader(sock.fileno(), self._udp_ready, sock)
        self._log.info("exampleTargetStarted", name=self.name, tcpPorts=list(tcp_ports), udpPorts=list(udp_ports))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._udp:
            loop.remove_reader(sock.fileno())
            sock.close()
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._udp.clear()
        self._servers.clear()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.connections >= self.max_connections:
            writer.close()
            return
        self.connections += 1
        self._handlers.add(task)
        try:
            writer.write(replies.greeting(self.name))
            await writer.drain()
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away: nothing to answer
        finally:
            self.connections -= 1
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _udp_ready(self, sock: socket.socket) -> None:
        cmsg_space = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(12)
        for _ in range(64):  # a bounded batch per wake-up, so TCP is served too under a UDP flood
            try:
                payload, cmsgs, _flags, peer = sock.recvmsg(replies.MAX_DATAGRAM, cmsg_space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._log.debug("udpReceiveFailed", error=str(exc))
                return
            destination = replies.destination_from_cmsgs(cmsgs)
            ancillary = [replies.source_cmsg(sock.family, destination)] if destination else []
            try:
                sock.sendmsg([replies.udp_reply(self.name, payload)], ancillary, 0, peer)
            except OSError as exc:  # full buffer or unreachable peer: UDP may drop
                self._log.debug("udpReplyDropped", error=str(exc), peer=str(peer[0]))
