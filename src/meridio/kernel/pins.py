"""Pinned network namespaces: a handle on *a caller's* namespace, and on the caller itself.

A process that connects to a unix socket can be identified without trusting anything it says: the
kernel tells its pid (``SO_PEERCRED``) and gives a pidfd for that very process (``SO_PEERPIDFD``, Linux
≥ 6.5; else ``pidfd_open``). :func:`pin_peer` then opens ``/proc/<pid>/ns/net`` (the *pin*: an open file
descriptor keeps that namespace reachable) and checks that the process behind the pidfd is still alive
with the same start time — so the pid was not recycled between the two steps. :func:`pin_owner` pins a
known owner again (after a restart of the pinning process). The proxy's credential socket
(:mod:`meridio.proxy.credentials`) and link service are built on these.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import socket
import struct

from meridio.common import procfs
from meridio.kernel import netns as netnsmod

__all__ = ["Owner", "PinError", "PinnedNs", "find_netns", "is_namespace_at", "owner_alive", "pin_owner", "pin_peer",
           "process_start_time"]

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)


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


def find_netns(inode: int, run_dir: str = netnsmod.NETNS_DIR) -> str | None:
    """The path of a named namespace (``ip netns``) with this inode, if there is one."""
    name = netnsmod.name_of(inode, run_dir)
    return os.path.join(run_dir, name) if name is not None else None


def is_namespace_at(pinned: PinnedNs, path: str) -> bool | None:
    """Whether the pinned namespace is the one at ``path`` (a bind mount such as ``/run/netns/<name>``,
    or ``/proc/<pid>/ns/net``): same ``(st_dev, st_ino)``. ``None`` if there is nothing at ``path``."""
    try:
        there = os.stat(path)
    except OSError:
        return None
    if pinned.ns_fd < 0:
        return False
    mine = os.fstat(pinned.ns_fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)
