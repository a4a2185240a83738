"""The credential socket's two proofs of a caller's namespace, across namespaces and pid namespaces.

Real: the proxy's :class:`~meridio.proxy.credentials.CredentialServer` on a unix socket, callers in
network namespaces made for the test, and (for the Kubernetes case) a server in a pid namespace of its
own, where the caller's pid is not visible: the passed descriptor is then the only proof.
"""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from meridio.api import linkclient
from meridio.common.clock import FakeClock
from meridio.kernel import netns as netnsmod
from meridio.proxy import credentials

pytestmark = pytest.mark.netns

# A credential server in its own pid namespace: prints "ready", takes one credential named on stdin and
# prints what it pinned (the owner's pid as this server sees it, and the namespace's inode).
_SERVER = """
import asyncio, json, os, sys
from meridio.common.clock import FakeClock
from meridio.proxy import credentials
async def main():
    server = credentials.CredentialServer(sys.argv[1], monotonic=FakeClock().monotonic)
    await server.start()
    print("ready", os.getpid(), flush=True)
    token = (await asyncio.to_thread(sys.stdin.readline)).strip()
    pinned = server.take(token)
    print(json.dumps(None if pinned is None else {"pid": pinned.owner.pid, "inode": pinned.inode,
                                                  "alive": pinned.alive()}), flush=True)
    await server.close()
asyncio.run(main())
"""

_CLIENT = "import asyncio, sys; from meridio.api import linkclient; print(asyncio.run(linkclient.credential(sys.argv[1])))"


def ns_inode(name: str) -> int:
    return os.stat(os.path.join(netnsmod.NETNS_DIR, name)).st_ino


def test_a_caller_that_passes_another_namespace_than_its_own_is_refused(netns, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    other = netns("other")

    async def run() -> str:
        server = credentials.CredentialServer(str(tmp_path / "c.cred"), monotonic=FakeClock().monotonic)
        await server.start()
        fd = os.open(os.path.join(netnsmod.NETNS_DIR, other), os.O_RDONLY)
        try:
            def ask() -> str:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(10)
                    sock.connect(server.path)
                    socket.send_fds(sock, [b"netns\n"], [fd])
                    return sock.recv(512).decode()
            answer = await asyncio.to_thread(ask)
            assert len(server._store) == 0
            # The same caller passing its own namespace gets a credential: it is the namespace, not the
            # caller, that was refused.
            token = await linkclient.credential(server.path)
            pinned = server.take(token)
            assert pinned is not None and pinned.inode == os.stat("/proc/self/ns/net").st_ino
            pinned.close()
            return answer
        finally:
            os.close(fd)
            await server.close()

    assert asyncio.run(run()) == f"error the namespace passed is not the one caller pid {os.getpid()} runs in\n"


def test_a_caller_in_a_target_namespace_is_pinned_by_its_descriptor_and_pid(netns, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    target = netns("target")
    path = str(tmp_path / "c.cred")
    server = subprocess.Popen([sys.executable, "-c", _SERVER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        assert server.stdout.readline().startswith("ready")
        client = subprocess.run(netnsmod.exec_argv(target, [sys.executable, "-c", _CLIENT, path]),
                                capture_output=True, text=True, timeout=30)
        assert client.returncode == 0, client.stderr
        server.stdin.write(client.stdout)
        server.stdin.flush()
        pinned = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    assert pinned["inode"] == ns_inode(target)
    assert pinned["pid"] > 0  # visible: the second proof was made (the client has exited since)


def test_a_caller_whose_pid_the_proxy_cannot_see_is_pinned_by_the_descriptor_alone(netns, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    """As in Kubernetes without host PIDs: the proxy runs in a pid namespace of its own."""
    target = netns("target")
    path = str(tmp_path / "c.cred")
    server = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", _SERVER, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        ready = server.stdout.readline().split()
        assert ready[0] == "ready" and ready[1] == "1"  # the server is pid 1 of its own pid namespace
        client = subprocess.Popen(netnsmod.exec_argv(target, [sys.executable, "-c",
                                                              _CLIENT + "; sys.stdin.readline()", path]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None and client.stdin is not None
            token = client.stdout.readline()
            assert token.strip(), client.stderr.read() if client.stderr else ""
            server.stdin.write(token)
            server.stdin.flush()
            pinned = json.loads(server.stdout.readline())
        finally:
            client.kill()
            client.wait()
    finally:
        server.kill()
        server.wait()
    assert pinned == {"pid": 0, "inode": ns_inode(target), "alive": True}
