"""Start a real NSP process in a test (for the NSP's own tests and every component that needs one).

    from tests.integration.nsp_support import start_nsp, SAMPLE_CONFIG

    def test_something(procs, tmp_path):
        address = start_nsp(procs, tmp_path, SAMPLE_CONFIG)       # "127.0.0.1:<free port>", SERVING
        ...

A watch of :class:`~meridio.api.nspclient.NspClient` is best read through :class:`Reader`
(``await r.next(timeout)``, ``await r.quiet_for(seconds)``): cancelling a pending ``__anext__`` of an
async generator would end it.

For restarts, config edits or a namespace, use :func:`launch_nsp`, which returns an
:class:`NspProcess` (``address``, ``config_file``, ``datasource``, ``proc``, ``restart()``,
``write_config()``). The NSP is started with ``procs.meridio("run", "nsp", ...)``, so the ``procs``
fixture stops it (by pid) at teardown, also when the test fails.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["SAMPLE_CONFIG", "free_port", "write_config", "NspProcess", "launch_nsp", "start_nsp", "wait_serving",
           "Reader"]

T = TypeVar("T")

# Meridio's e2e trench-a, reduced: one conduit, two streams, two flows, IPv4+IPv6 VIPs, one attractor.
SAMPLE_CONFIG = """\
trench: |
  name: trench-a
conduits: |
  items:
  - name: conduit-a-1
    trench: trench-a
streams: |
  items:
  - {name: stream-a-i, conduit: conduit-a-1, max-targets: 100}
  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}
flows: |
  items:
  - name: flow-a-x-tcp
    source-subnets: [0.0.0.0/0, 0:0:0:0:0:0:0:0/0]
    destination-port-ranges: ["4000"]
    source-port-ranges: ["0-65535"]
    protocols: [tcp]
    vips: [vip-a-1-v4, vip-a-1-v6]
    priority: 1
    stream: stream-a-i
  - name: flow-a-y-tcp
    source-subnets: [0.0.0.0/0]
    destination-port-ranges: ["4001"]
    source-port-ranges: ["0-65535"]
    protocols: [tcp]
    vips: [vip-a-1-v4]
    priority: 1
    stream: stream-a-ii
vips: |
  items:
  - {name: vip-a-1-v4, address: 203.0.113.1/32, trench: trench-a}
  - {name: vip-a-1-v6, address: 2001:db8::1/128, trench: trench-a}
attractors: |
  items:
  - {name: attractor-a-1, vips: [vip-a-1-v4, vip-a-1-v6], gateways: [gateway-v4-a-1], trench: trench-a}
gateways: |
  items:
  - name: gateway-v4-a-1
    address: 169.254.100.150
    ip-family: ipv4
    bfd: true
    protocol: bgp
    remote-asn: 4248829953
    local-asn: 8103
    hold-time: 24
    min-tx: 300
    min-rx: 300
    multiplier: 5
    trench: trench-a
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: pathlib.Path, text: str) -> None:
    """Replace ``path`` atomically (write a temporary file, then rename), as kubectl-like tools do."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_serving(address: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0,
                 service: str = "") -> None:
    """Block until the health service at ``address`` answers SERVING for ``service``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the NSP at {address} exited with {proc.returncode} before serving")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=0.5)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = resp.status
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.05)
    pytest.fail(f"the NSP at {address} is not SERVING after {timeout}s (last: {last})")


@dataclasses.dataclass
class NspProcess:
    procs: Any
    address: str
    port: int
    config_file: pathlib.Path
    datasource: pathlib.Path
    args: list[str]
    ns: str | None
    proc: subprocess.Popen[bytes]
    env: dict[str, str] | None = None
    health: str | None = None
    """Where to wait for SERVING (default: ``address``; a plain listener when ``address`` speaks mTLS)."""

    def write_config(self, text: str) -> None:
        write_config(self.config_file, text)

    def restart(self) -> None:
        """Start the NSP again (after it was stopped or killed) on the same port, file and database."""
        assert self.proc.poll() is not None, "stop or kill the NSP before restarting it"
        self.proc = self.procs.meridio(*self.args, ns=self.ns, env=self.env, name="nsp")
        wait_serving(self.health or self.address, self.proc)

    def output(self) -> str:
        return str(self.procs.output(self.proc))


def launch_nsp(procs: Any, tmp_path: pathlib.Path, config: str | None = SAMPLE_CONFIG, *,
               entry_timeout: str = "60s", ns: str | None = None, listen: str = "127.0.0.1",
               port: int | None = None, extra: tuple[str, ...] = ()) -> NspProcess:
    """Start ``meridio run nsp`` on a free port with its own config file and database under ``tmp_path``.

    ``config=None`` starts without a config file (an empty configuration is served). With ``ns`` the
    NSP runs in that network namespace and this function does not wait for it (its address is only
    reachable from inside the namespace).
    """
    base = tmp_path / f"nsp-{port or 'auto'}-{time.monotonic_ns()}"
    base.mkdir(parents=True)
    config_file, datasource = base / "configuration.yaml", base / "data" / "registry.db"
    if config is not None:
        write_config(config_file, config)
    port = port or free_port()
    args = ["run", "nsp", "--port", str(port), "--listen-address", listen, "--config-file", str(config_file),
            "--datasource", str(datasource), "--entry-timeout", entry_timeout, "--log-level", "DEBUG", *extra]
    if listen.startswith("unix:"):
        address = listen  # a unix socket: the port is unused
    else:
        address = f"{'127.0.0.1' if listen in ('0.0.0.0', '[::]') else listen}:{port}"
    proc = procs.meridio(*args, ns=ns, name="nsp")
    nsp = NspProcess(procs, address, port, config_file, datasource, args, ns, proc)
    if ns is None:
        wait_serving(address, proc)
    return nsp


def start_nsp(procs: Any, tmp_path: pathlib.Path, config: str | None = SAMPLE_CONFIG, **kw: Any) -> str:
    """Start an NSP serving ``config`` (ConfigMap data YAML) and return its ``host:port`` once SERVING."""
    return launch_nsp(procs, tmp_path, config, **kw).address


class Reader(Generic[T]):
    """Reads a watch with timeouts without cancelling it (cancelling ``__anext__`` would end the generator)."""

    def __init__(self, watch: AsyncIterator[T]) -> None:
        self._watch = watch
        self._pending: asyncio.Future[T] | None = None

    async def _wait(self, timeout: float) -> asyncio.Future[T] | None:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._watch.__anext__())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return None
        fut, self._pending = self._pending, None
        return fut

    async def next(self, timeout: float = 5.0) -> T:
        fut = await self._wait(timeout)
        if fut is None:
            pytest.fail(f"the watch yielded nothing within {timeout}s")
        return fut.result()

    async def quiet_for(self, seconds: float) -> bool:
        """True if nothing is yielded for ``seconds``."""
        return await self._wait(seconds) is None
