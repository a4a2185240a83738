"""The link service edge: the credential socket, the gRPC servicer's status codes, the client module.

Real: a unix stream socket and a ``grpc.aio`` server on a unix socket under tmp_path (no root needed:
a process may pin its own namespace). Fake: the forwarder behind the servicer (:class:`FakeForwarder`).
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from meridio.api import linkclient
from meridio.api.link import Link
from meridio.common import grpcutil
from meridio.common.clock import FakeClock
from meridio.common.retry import PermanentError, TemporaryError
from meridio.kernel import pins
from meridio.proxy import credentials, dataplane, names, service
from meridio.proxy.targets import PermissionDenied, Unauthenticated


async def test_the_credential_socket_pins_the_callers_own_namespace_once(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    server = credentials.CredentialServer(str(tmp_path / "link.sock.cred"), monotonic=clock.monotonic, ttl=10)
    await server.start()
    try:
        token = await linkclient.credential(server.path)
        pinned = server.take(token)
        assert pinned is not None and pinned.owner.pid == os.getpid()
        assert pinned.inode == os.stat("/proc/self/ns/net").st_ino == os.fstat(pinned.ns_fd).st_ino
        assert pinned.alive()
        assert server.take(token) is None
        pinned.close()
        assert pinned.ns_fd == -1
    finally:
        await server.close()
    assert not os.path.exists(server.path)


def open_pins() -> int:
    """Open namespace descriptors of this process."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        except OSError:
            pass
    return count


async def test_an_unused_credential_expires_and_its_namespace_is_unpinned(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    server = credentials.CredentialServer(str(tmp_path / "c.cred"), monotonic=clock.monotonic, ttl=10)
    await server.start()
    try:
        before = open_pins()
        token = await linkclient.credential(server.path)
        assert open_pins() == before + 1
        clock.advance(11)
        assert server.take(token) is None
        assert open_pins() == before
    finally:
        await server.close()


async def ask_raw(path: str, payload: bytes, fds: list[int]) -> str:
    """Send ``payload`` with ``fds`` attached on the credential socket, as a (mis)behaving caller would."""
    def ask() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            socket.send_fds(sock, [payload], fds) if fds else sock.sendall(payload)
            return sock.recv(512).decode()
    return await asyncio.to_thread(ask)


@pytest.mark.parametrize(("payload", "fds", "why"), [
    (b"netns\n", [], "^error the request must carry exactly one descriptor, the caller's network namespace "
                     "\\(got 0\\)\n$"),
    (b"netns\n", ["file"], "^error the descriptor passed is not a network namespace\n$"),
    (b"netns\n", ["uts"], "^error the descriptor passed is not a network namespace\n$"),
    (b"netns\n", ["net", "net"], "^error the request must carry exactly one descriptor.*\\(got 2\\)\n$"),
    (b"give\n", ["net"], "^error the request must be b'netns\\\\n' with the caller's network namespace attached"),
])
async def test_a_request_without_exactly_one_namespace_descriptor_is_refused_and_pins_nothing(
        tmp_path: pathlib.Path, payload: bytes, fds: list[str], why: str) -> None:
    server = credentials.CredentialServer(str(tmp_path / "c.cred"), monotonic=FakeClock().monotonic)
    await server.start()
    (tmp_path / "file").write_text("x")
    opened = [os.open(str(tmp_path / "file") if f == "file" else f"/proc/self/ns/{f}", os.O_RDONLY) for f in fds]
    try:
        before = open_pins()
        answer = await ask_raw(server.path, payload, opened)
        assert re.match(why, answer), answer
        assert len(server._store) == 0
        assert open_pins() == before  # every descriptor the server received was closed again
    finally:
        for fd in opened:
            os.close(fd)
        await server.close()


async def test_a_caller_that_sends_nothing_is_dropped_after_the_request_timeout_without_blocking_others(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "_REQUEST_TIMEOUT_S", 0.5)
    server = credentials.CredentialServer(str(tmp_path / "c.cred"), monotonic=FakeClock().monotonic)
    await server.start()
    try:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(server.path)
        token = await linkclient.credential(server.path)  # answered while the silent caller waits
        assert server.take(token) is not None
        answer = await asyncio.to_thread(lambda: (silent.settimeout(5), silent.recv(512))[1])
        assert answer.decode().startswith("error no request within 0.5 s")
        silent.close()
    finally:
        await server.close()


async def test_no_credential_socket_is_a_temporary_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TemporaryError, match="credential socket"):
        await linkclient.credential(str(tmp_path / "missing.cred"))


def test_a_dead_owner_is_told_apart_from_a_live_one() -> None:
    start = pins.process_start_time(os.getpid())
    assert start is not None
    assert pins.owner_alive(pins.Owner(os.getpid(), start))
    assert not pins.owner_alive(pins.Owner(os.getpid(), start + 1))
    assert not pins.owner_alive(pins.Owner(0, 0))


def test_socket_paths_accept_a_directory_or_a_socket(tmp_path: pathlib.Path) -> None:
    assert linkclient.socket_paths(str(tmp_path)) == (f"{tmp_path}/link.sock", f"{tmp_path}/link.sock.cred")
    assert linkclient.socket_paths(f"unix://{tmp_path}/x.sock") == (f"{tmp_path}/x.sock", f"{tmp_path}/x.sock.cred")


@pytest.mark.parametrize("exc,code", [
    (names.InvalidName("target_id: bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated("credential: x"), grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied("target_id: x"), grpc.StatusCode.PERMISSION_DENIED),
    (grpcutil.FailedPrecondition("interface_name: x"), grpc.StatusCode.FAILED_PRECONDITION),
    (TemporaryError("ipam"), grpc.StatusCode.UNAVAILABLE),
    (dataplane.KernelError("netlink"), grpc.StatusCode.UNAVAILABLE),
    (PermanentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
], ids=["name", "credential", "permission", "precondition", "temporary", "kernel", "permanent", "bug"])
def test_errors_map_to_status_codes(exc: Exception, code: grpc.StatusCode) -> None:
    assert service.status_for(exc) is code


class FakeForwarder:
    """FAKE forwarder: records calls, answers a fixed link, or raises what it is told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.error: Exception | None = None
        self.infos: asyncio.Queue[Link] = asyncio.Queue()

    async def connect(self, target_id: str, ifname: str, pinned: pins.PinnedNs) -> Link:
        self.calls.append((target_id, ifname, pinned.inode))
        pinned.close()
        if self.error is not None:
            raise self.error
        return Link(target_id, ifname, ("172.16.1.6/24",), ("172.16.1.1",), ("203.0.113.1/32",), 1500,
                        "conduit-a-1", "trench-a", "node-1")

    async def disconnect(self, target_id: str, pinned: pins.PinnedNs) -> bool:
        self.calls.append((target_id, "", pinned.inode))
        pinned.close()
        return True

    async def watch(self, target_id: str) -> AsyncIterator[Link]:
        while True:
            yield await self.infos.get()


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[tuple[FakeForwarder, str]]:
    sock = str(tmp_path / "link.sock")
    creds = credentials.CredentialServer(credentials.credential_path(sock), monotonic=FakeClock().monotonic)
    await creds.start()
    fwd = FakeForwarder()
    server = grpcutil.create_server()
    service.add_to_server(server, service.LinkServicer(fwd, creds))  # type: ignore[arg-type]
    grpcutil.add_listener(server, f"unix:{sock}")
    await server.start()
    try:
        yield fwd, sock
    finally:
        await server.stop(None)
        await creds.close()


async def test_connect_over_the_wire_carries_the_callers_namespace_and_returns_the_link(served: Any) -> None:
    fwd, sock = served
    link = await linkclient.connect(sock, "target-1", "nsm-0")
    assert fwd.calls == [("target-1", "nsm-0", os.stat("/proc/self/ns/net").st_ino)]
    assert link == Link("target-1", "nsm-0", ("172.16.1.6/24",), ("172.16.1.1",), ("203.0.113.1/32",),
                                   1500, "conduit-a-1", "trench-a", "node-1")
    assert link.connected and link.ips == ("172.16.1.6",)
    await linkclient.disconnect(sock, "target-1")
    assert fwd.calls[-1][:2] == ("target-1", "")


@pytest.mark.parametrize("target_id,ifname,field", [("", "nsm-0", "target_id"), ("a:b", "nsm-0", "target_id"),
                                                    ("t", "nsm 0", "interface_name")],
                         ids=["empty-id", "colon-id", "space-ifname"])
async def test_malformed_connect_requests_are_invalid_arguments_naming_the_field(served: Any, target_id: str,
                                                                                ifname: str, field: str) -> None:
    fwd, sock = served
    with pytest.raises(PermanentError, match=f"INVALID_ARGUMENT: {field}: ") as info:
        await linkclient.connect(sock, target_id, ifname)
    assert info.value.status_code is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert fwd.calls == []


async def test_a_connect_without_a_valid_credential_is_unauthenticated(served: Any) -> None:
    fwd, sock = served
    from meridio.api.pb.meridio.proxy.v1 import link_pb2, link_pb2_grpc
    async with grpcutil.insecure_channel(f"unix:{sock}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await link_pb2_grpc.LinkServiceStub(ch).Connect(
                link_pb2.ConnectRequest(target_id="t", credential="forged", interface_name="nsm-0"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED and "credential" in (info.value.details() or "")
    assert fwd.calls == []


async def test_forwarder_refusals_reach_the_client_with_their_code(served: Any) -> None:
    fwd, sock = served
    fwd.error = PermissionDenied("target_id: t is linked from another network namespace")
    with pytest.raises(PermanentError, match="PERMISSION_DENIED: target_id: t is linked") as info:
        await linkclient.connect(sock, "t", "nsm-0")
    assert info.value.status_code is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


async def test_watch_streams_every_state_of_the_link(served: Any) -> None:
    fwd, sock = served
    fwd.infos.put_nowait(Link("t"))
    fwd.infos.put_nowait(Link("t", "nsm-0", ("172.16.1.6/24",)))
    stream = linkclient.watch(sock, "t")
    first, second = await stream.__anext__(), await stream.__anext__()
    await stream.aclose()
    assert not first.connected and second.connected and second.addresses == ("172.16.1.6/24",)


def test_an_exited_owner_is_dead_even_before_its_parent_reaps_it() -> None:
    import signal
    import subprocess
    import time
    child = subprocess.Popen(["sleep", "60"])
    start = pins.process_start_time(child.pid)
    assert start is not None
    pinned = pins.PinnedNs(-1, pins.Owner(child.pid, start), 0, os.pidfd_open(child.pid))
    try:
        assert pinned.alive() and pins.owner_alive(pinned.owner)
        os.kill(child.pid, signal.SIGKILL)
        for _ in range(100):
            if not pinned.alive():
                break
            time.sleep(0.01)
        assert not pinned.alive()  # a zombie now: exited, not yet waited for
        assert not pins.owner_alive(pinned.owner)
    finally:
        pinned.close()
        child.wait()
