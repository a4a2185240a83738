"""The credential socket: who is calling, and a handle on *their* network namespace.

A TAPA cannot name a namespace in its Connect request (it could name someone else's). Instead it first
connects to this plain unix stream socket and sends ``netns`` with a descriptor of its own network
namespace attached (``SCM_RIGHTS``); the proxy checks it (:func:`meridio.kernel.pins.receive_netns`) and,
where the caller's pid is visible, that it is the namespace that very process runs in
(:func:`meridio.kernel.pins.pin_peer`: ``SO_PEERCRED``, a pidfd, ``/proc/<pid>/ns/net``, checked against
pid reuse), and answers one line: a one-time credential. Connect and Disconnect present it; the link
service gets the pinned namespace from :class:`CredentialServer`. The socket is owner-only and a
caller whose uid is not allowed (:mod:`meridio.kernel.localsock`) gets ``error`` and nothing pinned.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from meridio.common import log as logmod
from meridio.kernel import localsock
from meridio.kernel.pins import PinError, PinnedNs, pin_peer, receive_netns
from meridio.proxy import tokens

__all__ = ["CredentialServer", "credential_path"]
_CRED_TTL_S = 10.0
_REQUEST_TIMEOUT_S = 5.0
_MAX_PENDING = 16
"""Requests being read at once; more callers wait in the listen backlog."""


def credential_path(link_socket: str) -> str:
    """The credential socket that goes with a link-service socket path: ``<path>.cred``."""
    return link_socket + ".cred"


class CredentialServer:
    """Serves the credential socket; :meth:`take` hands a pinned namespace to Connect/Disconnect."""

    def __init__(self, path: str, *, monotonic: Callable[[], float], ttl: float = _CRED_TTL_S,
                 access: localsock.Access = localsock.OWNER_ONLY, log: logmod.Logger = logmod.null) -> None:
        self.path = path
        self.access = access
        self._monotonic = monotonic
        self._store: tokens.TokenStore[PinnedNs] = tokens.TokenStore(ttl)
        self._log = log
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._pending = asyncio.Semaphore(_MAX_PENDING)

    async def start(self) -> None:
        localsock.prepare_dir(self.path, self.access)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with localsock.private_umask(self.access):
            listener.bind(self.path)
        listener.listen(64)
        listener.setblocking(False)
        localsock.finish(self.path, self.access)
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept_loop())

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        for pinned in self._store.drain():
            pinned.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def take(self, token: str) -> PinnedNs | None:
        """The namespace pinned for ``token`` (once), or ``None`` for an unknown or expired token."""
        self.expire()
        return self._store.take(token, self._monotonic()) if token else None

    def expire(self) -> None:
        for pinned in self._store.expire(self._monotonic()):
            pinned.close()

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                conn, _ = await loop.sock_accept(self._listener)
                await self._pending.acquire()
                task = asyncio.create_task(self._handle(conn))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _handle(self, conn: socket.socket) -> None:
        try:
            pinned = await asyncio.to_thread(self._pin, conn)
            answer = self._issue(pinned) if isinstance(pinned, PinnedNs) else pinned
            conn.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(conn, answer), _REQUEST_TIMEOUT_S)
        except (ConnectionError, OSError, TimeoutError) as exc:
            self._log.debug("credentialAborted", error=str(exc))
        finally:
            conn.close()
            self._pending.release()

    def _pin(self, conn: socket.socket) -> PinnedNs | bytes:
        """Check the caller and pin the namespace it passed; the refusal to send otherwise (blocking:
        runs in a worker thread, touching nothing of the server's state)."""
        conn.setblocking(True)
        try:
            localsock.check_peer(conn, self.access)
            return pin_peer(conn, receive_netns(conn, _REQUEST_TIMEOUT_S))
        except localsock.PeerRefused as exc:
            self._log.warning("credentialRefused", reason="peerRefused", error=str(exc))
            return f"error {exc}\n".encode()
        except PinError as exc:
            self._log.warning("credentialRefused", reason="pinFailed", error=str(exc))
            return f"error {exc}\n".encode()

    def _issue(self, pinned: PinnedNs) -> bytes:
        self.expire()
        try:
            token = self._store.issue(pinned, self._monotonic())
        except OverflowError as exc:
            pinned.close()
            self._log.warning("credentialRefused", reason="tooMany", error=str(exc))
            return f"error {exc}\n".encode()
        self._log.debug("credentialIssued", pid=pinned.owner.pid, netns_inode=pinned.inode)
        return f"ok {token}\n".encode()
