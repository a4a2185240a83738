"""The credential socket: who is calling, and a handle on *their* network namespace (host adapter).

A TAPA cannot name a namespace in its Connect request (it could name someone else's). Instead it first
connects to this plain unix stream socket. The proxy reads the caller's pid with ``SO_PEERCRED`` and a
pidfd for that very process (``SO_PEERPIDFD``, Linux ≥ 6.5; else ``pidfd_open``), opens
``/proc/<pid>/ns/net`` (the *pin*: an open file descriptor keeps that namespace reachable), then checks
that the process behind the pidfd is still alive and still has the same start time — so the pid was
not recycled between the two steps — and answers one line: a one-time credential. Connect and
Disconnect present it; the link service gets the pinned namespace from :class:`CredentialServer`.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import socket
import struct
from collections.abc import Callable

from meridio.common import log as logmod
from meridio.common import procfs
from meridio.proxy import tokens

__all__ = [
    "CredentialServer",
    "Owner",
    "PinError",
    "PinnedNs",
    "credential_path",
    "find_netns",
    "owner_alive",
    "pin_owner",
    "pin_peer",
    "process_start_time",
]

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
_CRED_TTL_S = 10.0


class PinError(OSError):
    """The caller's namespace could not be pinned (the caller went away, or /proc is not readable)."""


def credential_path(link_socket: str) -> str:
    """The credential socket that goes with a link-service socket path: ``<path>.cred``."""
    return link_socket + ".cred"


def process_start_time(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), ``None`` if there is no such process
    or it has exited (a zombie waiting for its parent counts as exited)."""
    st = procfs.stat(pid, proc)
    return None if st is None or st.exited else st.start_time


@dataclasses.dataclass(frozen=True)
class Owner:
    """The process that asked for a link (the TAPA): pid + start time identify it across restarts."""

    pid: int
    start_time: int


def owner_alive(owner: Owner, proc: str = "/proc") -> bool:
    return owner.pid > 0 and process_start_time(owner.pid, proc) == owner.start_time


@dataclasses.dataclass
class PinnedNs:
    """An open handle on a caller's network namespace, and on the caller (pidfd, -1 if none)."""

    ns_fd: int
    owner: Owner
    inode: int
    pidfd: int = -1

    def close(self) -> None:
        for fd in (self.ns_fd, self.pidfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.ns_fd = self.pidfd = -1

    def alive(self) -> bool:
        """Whether the owner still runs. A pidfd turns readable when its process exits (zombies
        included, which a signal probe would still reach); without one, /proc tells."""
        if self.pidfd >= 0:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return not poller.poll(0)
        return owner_alive(self.owner)


def _peer_pidfd(sock: socket.socket, pid: int) -> int:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4)
        return int(struct.unpack("i", raw)[0])
    except OSError:
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            raise PinError(f"caller pid {pid} is gone ({exc.strerror})") from None


def pin_peer(sock: socket.socket) -> PinnedNs:
    """Pin the network namespace of the process connected on ``sock`` (see the module docstring)."""
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    if pid <= 0:
        raise PinError("the caller's pid is not visible (another pid namespace?)")
    pidfd = _peer_pidfd(sock, pid)
    try:
        start = process_start_time(pid)
        ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(pidfd)
        raise PinError(f"cannot open the namespace of pid {pid}: {exc.strerror}") from None
    pinned = PinnedNs(ns_fd, Owner(pid, start or 0), os.fstat(ns_fd).st_ino, pidfd)
    # Why here: only if the same process is still alive *after* the open can we be sure that
    # /proc/<pid> was that process (a pid is not reused while its process lives).
    if start is None or not pinned.alive() or process_start_time(pid) != start:
        pinned.close()
        raise PinError(f"caller pid {pid} went away while its namespace was pinned")
    return pinned


class CredentialServer:
    """Serves the credential socket; :meth:`take` hands a pinned namespace to Connect/Disconnect."""

    def __init__(self, path: str, *, monotonic: Callable[[], float], ttl: float = _CRED_TTL_S,
                 log: logmod.Logger = logmod.null) -> None:
        self.path = path
        self._monotonic = monotonic
        self._store: tokens.TokenStore[PinnedNs] = tokens.TokenStore(ttl)
        self._log = log
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._handle, path=self.path)
        os.chmod(self.path, 0o666)

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
                pinned = pin_peer(sock)
                self.expire()
                token = self._store.issue(pinned, self._monotonic())
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


def pin_owner(owner: Owner, inode: int) -> PinnedNs | None:
    """Pin the namespace of a known owner again (after a proxy restart): only if that very process still
    runs and is still in the namespace with ``inode``; ``None`` otherwise."""
    if not owner_alive(owner):
        return None
    try:
        pidfd = os.pidfd_open(owner.pid)
    except OSError:
        return None
    try:
        ns_fd = os.open(f"/proc/{owner.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(pidfd)
        return None
    pinned = PinnedNs(ns_fd, owner, os.fstat(ns_fd).st_ino, pidfd)
    if pinned.inode != inode or not owner_alive(owner):
        pinned.close()
        return None
    return pinned


def find_netns(inode: int, run_dir: str = "/run/netns") -> str | None:
    """A named namespace (``ip netns``) with this inode, if there is one."""
    try:
        entries = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return None
    for name in entries:
        path = os.path.join(run_dir, name)
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                return path
    return None
