"""Network namespaces: create, remove, run a command or a function inside one.

Names are the ones ``ip netns`` uses (files under ``/run/netns``). Everything here is synchronous and
small; callers that need many netlink operations open a pyroute2 ``NetNS``/``IPRoute`` themselves.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["NETNS_DIR", "NETNS_ETC_DIR", "CommandTimeout", "write_etc",
           "exists", "create", "remove", "list_names", "name_of", "own_name", "own_inode", "pids_in",
           "exec_argv", "run", "entered", "entered_fd", "connect"]

NETNS_DIR = "/run/netns"
NETNS_ETC_DIR = "/etc/netns"
"""``ip netns exec NAME`` bind-mounts each file of ``/etc/netns/NAME/`` over its namesake in ``/etc``."""


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def create(name: str, *, loopback_up: bool = True) -> None:
    """Create namespace ``name`` (idempotent) and bring its loopback up."""
    if not exists(name):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    if loopback_up:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)


def remove(name: str) -> None:
    """Delete namespace ``name`` if it exists (its veth ends go with it), and its ``/etc/netns/NAME``."""
    if exists(name):
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    etc = os.path.join(NETNS_ETC_DIR, name)
    if os.path.isdir(etc):
        shutil.rmtree(etc, ignore_errors=True)


def write_etc(name: str, filename: str, text: str) -> bool:
    """Make ``/etc/netns/NAME/FILENAME`` hold ``text`` (what processes started by ``ip netns exec NAME``
    see as ``/etc/FILENAME``); returns whether it changed.

    Rewritten in place, not renamed: a running process sees the file through a bind mount of its inode,
    so an update reaches it (a replaced file would not).
    """
    if "/" in name or "/" in filename or name in ("", ".", ".."):
        raise ValueError(f"invalid namespace or file name: {name!r}/{filename!r}")
    path = os.path.join(NETNS_ETC_DIR, name, filename)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(text)
    return True


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def name_of(inode: int, run_dir: str = NETNS_DIR) -> str | None:
    """The ``ip netns`` name of the namespace with ``inode`` (``None`` if it has none)."""
    try:
        names = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return None
    for name in names:
        try:
            if os.stat(os.path.join(run_dir, name)).st_ino == inode:
                return name
        except OSError:
            continue
    return None


def own_inode() -> int:
    """The inode of this process's network namespace (changes when a namespace of the same name is made
    again)."""
    return os.stat("/proc/self/ns/net").st_ino


def own_name(run_dir: str = NETNS_DIR) -> str:
    """The ``ip netns`` name of this process's network namespace ('' if it has none)."""
    return name_of(os.stat("/proc/self/ns/net").st_ino, run_dir) or ""


def pids_in(names: Iterable[str]) -> set[int]:
    """Every process whose network namespace is one of the named ones (those that exist)."""
    inodes = set()
    for name in names:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(os.path.join(NETNS_DIR, name)).st_ino)
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.add(int(entry))
    return found


def exec_argv(name: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so it runs inside namespace ``name`` (unchanged for ``None``)."""
    return list(argv) if name is None else ["ip", "netns", "exec", name, *argv]


class CommandTimeout(TimeoutError):
    """A command run by :func:`run` did not finish in time (it was killed)."""


def run(name: str | None, argv: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``name`` and capture its output; :class:`CommandTimeout` after
    ``timeout`` seconds."""
    try:
        return subprocess.run(exec_argv(name, argv), check=check, capture_output=True, text=True, input=input,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"{' '.join(argv[:3])}... did not finish within {timeout:.0f}s") from None


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Switch the calling *thread* into namespace ``name`` and back (setns on the thread).

    Only safe in a process or thread that does nothing else meanwhile (e.g. a forked helper or a
    dedicated thread): sockets opened inside stay in ``name``.
    """
    with open(f"/proc/self/task/{_tid()}/ns/net") as own, open(os.path.join(NETNS_DIR, name)) as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(own.fileno())


@contextlib.contextmanager
def entered_fd(fd: int) -> Iterator[None]:
    """As :func:`entered`, for a namespace given as an open file descriptor (``/proc/PID/ns/net``)."""
    with open(f"/proc/self/task/{_tid()}/ns/net") as own:
        _setns(fd)
        try:
            yield
        finally:
            _setns(own.fileno())


def connect(name: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to ``host:port`` as seen from inside namespace ``name`` (blocking; run it in a
    worker thread). The socket belongs to ``name`` for its whole life, so the caller may use it anywhere:
    this is how the runtime reaches a pod's loopback-only ports (``kubectl port-forward``)."""
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def inside() -> None:
        try:
            with entered(name):
                result.append(socket.create_connection((host, port), timeout=timeout))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=inside, name=f"connect-{name}", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) into a network namespace (``os.setns`` only exists from Python 3.12)."""
    if hasattr(os, "setns"):
        os.setns(fd, _CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _tid() -> int:
    return threading.get_native_id()
