"""The credential socket: who is calling, and a handle on *their* network namespace.

A TAPA cannot name a namespace in its Connect request (it could name someone else's). Instead it first
connects to this plain unix stream socket; the proxy pins the caller's namespace from the socket itself
(:func:`meridio.kernel.pins.pin_peer`: ``SO_PEERCRED``, a pidfd, ``/proc/<pid>/ns/net``, checked against
pid reuse) and answers one line: a one-time credential. Connect and Disconnect present it; the link
service gets the pinned namespace from :class:`CredentialServer`. The socket is owner-only and a
caller whose uid is not allowed (:mod:`meridio.kernel.localsock`) gets ``error`` and nothing pinned.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from meridio.common import log as logmod
from meridio.kernel import localsock
from meridio.kernel.pins import PinError, PinnedNs, pin_peer
from meridio.proxy import tokens

__all__ = ["CredentialServer", "credential_path"]
_CRED_TTL_S = 10.0


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
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        localsock.prepare_dir(self.path, self.access)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with localsock.private_umask(self.access):
            self._server = await asyncio.start_unix_server(self._handle, path=self.path)
        localsock.finish(self.path, self.access)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            try:
                localsock.check_peer(sock, self.access)
                pinned = pin_peer(sock)
                self.expire()
                token = self._store.issue(pinned, self._monotonic())
            except localsock.PeerRefused as exc:
                self._log.warning("credentialRefused", reason="peerRefused", error=str(exc))
                writer.write(f"error {exc}\n".encode())
            except (PinError, OverflowError) as exc:
                self._log.warning("credentialRefused", reason="pinFailed", error=str(exc))
                writer.write(f"error {exc}\n".encode())
            else:
                self._log.debug("credentialIssued", pid=pinned.owner.pid, netns_inode=pinned.inode)
                writer.write(f"ok {token}\n".encode())
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            self._log.debug("credentialAborted", error=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


