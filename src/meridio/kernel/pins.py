"""Pinned network namespaces: a handle on *a caller's* namespace, and on the caller itself.

A process that connects to a unix socket proves which network namespace is its own in two ways:

1. it passes an open descriptor of it (``/proc/thread-self/ns/net``) with ``SCM_RIGHTS``
   (:func:`receive_netns`): only a process that can open a namespace can pass it, and it works where the
   pinning process cannot see the caller's pid (Kubernetes without host PIDs);
2. where the caller's pid is visible, the kernel tells it (``SO_PEERCRED``) and gives a pidfd for that
   very process (``SO_PEERPIDFD``, Linux ≥ 6.5; else ``pidfd_open``): :func:`pin_peer` then checks that
   ``/proc/<pid>/ns/net`` is the namespace passed (a process cannot pass another one's namespace as its
   own) and that the process behind the pidfd is still alive with the same start time — so the pid was
   not recycled between the steps.

The passed descriptor is the *pin*: an open file descriptor keeps that namespace reachable.
:func:`pin_owner` pins a known owner again (after a restart of the pinning process). The proxy's
credential socket (:mod:`meridio.proxy.credentials`) and link service are built on these.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import select
import socket
import struct

from meridio.api.link import CREDENTIAL_REQUEST
from meridio.common import procfs
from meridio.kernel import netns as netnsmod

__all__ = ["Owner", "PinError", "PinnedNs", "find_netns", "is_namespace_at",
           "owner_alive", "pin_owner", "pin_peer", "process_start_time", "receive_netns"]

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
CLONE_NEWNET = 0x40000000
_MAX_REQUEST = 64
_MAX_FDS = 4


class PinError(OSError):
    """The caller's namespace could not be pinned (the caller went away, or /proc is not readable)."""


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

    @property
    def pid_visible(self) -> bool:
        """Whether the owner's pid was seen (same or parent pid namespace); if not, only the passed
        namespace descriptor proved who called, and the owner's liveness must be judged otherwise."""
        return self.owner.pid > 0

    def alive(self) -> bool:
        """Whether the owner still runs. A pidfd turns readable when its process exits (zombies
        included, which a signal probe would still reach); without one, /proc tells. An owner whose
        pid is not visible counts as alive here (see :attr:`pid_visible`)."""
        if not self.pid_visible:
            return True
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


def _is_netns(fd: int) -> bool:
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:  # ENOTTY: not a namespace file at all
        return False


def receive_netns(sock: socket.socket, timeout: float) -> int:
    """Read the caller's request from a connected (blocking) ``sock``: :data:`CREDENTIAL_REQUEST` with exactly
    one network-namespace descriptor attached. Returns the descriptor (the caller's to close);
    :class:`PinError` saying what was wrong otherwise (every received descriptor closed)."""
    sock.settimeout(timeout)
    try:
        data, fds, flags, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS)
    except TimeoutError:
        raise PinError(f"no request within {timeout:g} s") from None
    except OSError as exc:
        raise PinError(f"cannot read the request: {exc.strerror or exc}") from None
    keep = -1
    try:
        if data != CREDENTIAL_REQUEST:
            raise PinError(f"the request must be {CREDENTIAL_REQUEST!r} with the caller's network namespace "
                           f"attached (SCM_RIGHTS)")
        if flags & socket.MSG_CTRUNC or len(fds) != 1:
            raise PinError(f"the request must carry exactly one descriptor, the caller's network namespace "
                           f"(got {len(fds)}{' or more' if flags & socket.MSG_CTRUNC else ''})")
        if not _is_netns(fds[0]):
            raise PinError("the descriptor passed is not a network namespace")
        keep = fds[0]
        return keep
    finally:
        for fd in fds:
            if fd != keep:
                os.close(fd)


def pin_peer(sock: socket.socket, ns_fd: int) -> PinnedNs:
    """Pin the network namespace ``ns_fd`` that the process connected on ``sock`` passed as its own (see
    the module docstring). ``ns_fd`` belongs to the result, or is closed on failure."""
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    inode = os.fstat(ns_fd).st_ino
    if pid <= 0:
        # The caller lives in a pid namespace we cannot see into: the descriptor is the only proof.
        return PinnedNs(ns_fd, Owner(0, 0), inode)
    try:
        pidfd = _peer_pidfd(sock, pid)
    except PinError:
        os.close(ns_fd)
        raise
    pinned = PinnedNs(ns_fd, Owner(pid, 0), inode, pidfd)
    try:
        start = process_start_time(pid)
        there = os.stat(f"/proc/{pid}/ns/net")
    except OSError as exc:
        pinned.close()
        raise PinError(f"cannot look at the namespace of pid {pid}: {exc.strerror}") from None
    # Why after the stat: only if the same process is still alive *after* it can we be sure that
    # /proc/<pid> was that process (a pid is not reused while its process lives).
    if start is None or not pinned.alive() or process_start_time(pid) != start:
        pinned.close()
        raise PinError(f"caller pid {pid} went away while its namespace was pinned")
    mine = os.fstat(ns_fd)
    if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
        pinned.close()
        raise PinError(f"the namespace passed is not the one caller pid {pid} runs in")
    pinned.owner = Owner(pid, start)
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
