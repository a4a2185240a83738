"""Node-local unix sockets that only their owner (root) and configured uids may use.

Every unix-socket server of a component (the proxy's link and credential sockets, the LB's
availability socket, TAPA's API socket) goes through here, so they all follow one rule:

- the socket file is ``0600`` (``0660`` with a group, for a peer that runs under another uid), and it
  is *created* that way: it is bound under a restrictive umask, so there is no moment between bind and
  chmod in which another user could connect;
- its directory is made ``0700`` (``0750`` with a group) when it does not exist yet, and a directory
  that is writable by everyone is refused (anyone could replace the socket there);
- every connection's peer is checked with ``SO_PEERCRED`` (:func:`check_peer`): root, this process's
  own uid and the configured uids may call, anyone else is disconnected before a byte is read.

gRPC servers do not hand out the accepted socket, so :class:`GuardedListener` listens on the public
path itself, checks the peer, and relays the connection's bytes to the gRPC server, which listens on
a private ``0600`` socket beside it (``<path>.grpc``). The plain credential socket calls
:func:`check_peer` directly. In Kubernetes the same checks hold for sockets shared over a hostPath.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import os
import socket
import stat
import struct
from collections.abc import Iterator

from meridio.common import log as logmod
from meridio.common.settings import SettingsError

__all__ = ["OWNER_ONLY", "Access", "GuardedListener", "PeerRefused", "UnsafeDirectory", "access_from", "backend_path",
           "check_peer", "finish", "peer_uid", "prepare_dir", "private_umask"]

_RELAY_CHUNK = 65536


class PeerRefused(PermissionError):
    """The process on the other end of a connection runs under a uid that may not call."""


class UnsafeDirectory(OSError):
    """A socket's directory is writable by everyone (or is not a directory)."""


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may use a socket: root and this process's uid always, plus ``uids``; ``gid``: the group of
    the socket file and a directory the runtime creates (``0660`` / ``0750`` instead of ``0600`` / ``0700``)."""

    uids: frozenset[int] = frozenset()
    gid: int | None = None

    def allows(self, uid: int) -> bool:
        return uid == 0 or uid == os.geteuid() or uid in self.uids

    @property
    def mode(self) -> int:
        return 0o600 if self.gid is None else 0o660

    @property
    def dir_mode(self) -> int:
        return 0o700 if self.gid is None else 0o750


OWNER_ONLY = Access()


def access_from(uids: str, group: str, *, prefix: str) -> Access:
    """Parse ``<prefix>SOCKET_UIDS`` (comma-separated uids) and ``<prefix>SOCKET_GROUP`` (a group name or
    gid); :class:`SettingsError` names the variable and the rule."""
    allowed: set[int] = set()
    for item in (u.strip() for u in uids.split(",")):
        if not item:
            continue
        if not item.isdigit() or int(item) > 0xFFFFFFFE:
            raise SettingsError(f"{prefix}SOCKET_UIDS: {item[:64]!r} is not a uid (numbers 0-4294967294, "
                                f"comma-separated)")
        allowed.add(int(item))
    gid: int | None = None
    if group.strip():
        name = group.strip()
        try:
            gid = int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
        except KeyError:
            raise SettingsError(f"{prefix}SOCKET_GROUP: no group named {name[:64]!r}") from None
    return Access(frozenset(allowed), gid)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process that connected ``sock`` (``SO_PEERCRED``: the kernel's word, not the peer's)."""
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return int(uid)


def check_peer(sock: socket.socket, access: Access) -> int:
    """The peer's uid if ``access`` allows it; :class:`PeerRefused` otherwise."""
    uid = peer_uid(sock)
    if not access.allows(uid):
        raise PeerRefused(f"uid {uid} may not use this socket (allowed: root, uid {os.geteuid()}"
                          f"{''.join(f', {u}' for u in sorted(access.uids))})")
    return uid


def prepare_dir(path: str, access: Access) -> None:
    """Create the socket's directory with ``access.dir_mode`` if missing; refuse a world-writable one."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=access.dir_mode, exist_ok=True)
        os.chmod(directory, access.dir_mode)  # makedirs' mode is filtered by the umask
        if access.gid is not None:
            os.chown(directory, -1, access.gid)
    st = os.stat(directory)
    if st.st_mode & stat.S_IWOTH:
        raise UnsafeDirectory(f"{directory}: a socket directory must not be writable by everyone "
                              f"(mode {stat.S_IMODE(st.st_mode):04o}); use a directory of its own")


@contextlib.contextmanager
def private_umask(access: Access = OWNER_ONLY) -> Iterator[None]:
    """Bind sockets inside this block: they are created with at most ``access.mode``."""
    old = os.umask(0o777 & ~access.mode)
    try:
        yield
    finally:
        os.umask(old)


def finish(path: str, access: Access) -> None:
    """Give a freshly bound socket its group and exact mode."""
    if access.gid is not None:
        os.chown(path, -1, access.gid)
    os.chmod(path, access.mode)


def _remove_stale(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UnsafeDirectory(f"{path} exists and is not a socket")
        os.unlink(path)


def backend_path(path: str) -> str:
    """Where the gRPC server behind a :class:`GuardedListener` on ``path`` listens (owner-only)."""
    return path + ".grpc"


class GuardedListener:
    """The public unix socket of a gRPC server: checks each caller's uid, then relays its bytes to the
    server's private socket :attr:`backend` (bind the server there inside :func:`private_umask`)."""

    def __init__(self, path: str, access: Access = OWNER_ONLY, *, log: logmod.Logger = logmod.null) -> None:
        self.path = path
        self.backend = backend_path(path)
        self.access = access
        self._log = log
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def prepare(self) -> None:
        """Check/create the directory and remove stale sockets (before the gRPC server binds :attr:`backend`)."""
        prepare_dir(self.path, self.access)
        _remove_stale(self.backend)
        _remove_stale(self.path)

    async def start(self) -> None:
        with private_umask(self.access):
            self._server = await asyncio.start_unix_server(self._handle, path=self.path)
        finish(self.path, self.access)
        os.chmod(self.backend, 0o600)  # only this process (and root) reach the server without the check

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None
        for p in (self.path, self.backend):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                check_peer(writer.get_extra_info("socket"), self.access)
            except (PeerRefused, OSError) as exc:
                self._log.warning("socketPeerRefused", socket=self.path, error=str(exc))
                return
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(self.backend)
            except OSError as exc:
                self._log.warning("socketRelayFailed", socket=self.path, error=str(exc))
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (HTTP/2 peers then close on their own)."""
    try:
        while data := await reader.read(_RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
