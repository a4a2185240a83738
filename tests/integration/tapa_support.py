"""Helpers for TAPA process tests: a TEST DOUBLE of the proxy link service, TAPA start, status waits.

``ProxyDouble`` is NOT the proxy: it serves ``meridio.proxy.v1.LinkService`` (and the credential socket
beside it) on a unix socket from the test process, hands each target fixed conduit addresses and
creates no interface. It lets the TAPA process run against the real NSP without namespaces; the real
proxy is used by ``tests/netns/test_conduit_*.py``.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.api.pb.meridio.proxy.v1 import link_pb2, link_pb2_grpc
from meridio.api.pb.nsp.v1 import model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from tests.integration.nsp_support import wait_serving

STATUS = tap_pb2.StreamStatus.Status


class _CredHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"ok double-credential\n")


class ProxyDouble(link_pb2_grpc.LinkServiceServicer):
    """TEST DOUBLE of one conduit's proxy link service (see the module docstring)."""

    def __init__(self, directory: pathlib.Path, host_index: int = 6) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = str(directory / "link.sock")
        self.links: dict[str, link_pb2.Link] = {}
        self.calls: list[str] = []
        self._next = host_index
        self._changed = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        link_pb2_grpc.add_LinkServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{self.path}")
        self._cred = socketserver.ThreadingUnixStreamServer(self.path + ".cred", _CredHandler)
        self._cred.daemon_threads = True

    def start(self) -> ProxyDouble:
        self._server.start()
        threading.Thread(target=self._cred.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.stop(0)
        self._cred.shutdown()
        self._cred.server_close()
        for p in (self.path, self.path + ".cred"):
            if os.path.exists(p):
                os.unlink(p)

    def Connect(self, request: link_pb2.ConnectRequest, context: Any) -> link_pb2.Link:
        with self._changed:
            self.calls.append(f"connect {request.target_id}")
            if request.target_id not in self.links:
                n, self._next = self._next, self._next + 1
                self.links[request.target_id] = link_pb2.Link(
                    target_id=request.target_id, interface_name=request.interface_name,
                    addresses=[f"172.16.1.{n}/24", f"fd00:0:0:1::{n}/64"], gateways=["172.16.1.1", "fd00:0:0:1::1"])
            self._changed.notify_all()
            return self.links[request.target_id]

    def Disconnect(self, request: link_pb2.DisconnectRequest, context: Any) -> empty_pb2.Empty:
        with self._changed:
            self.calls.append(f"disconnect {request.target_id}")
            self.links.pop(request.target_id, None)
            self._changed.notify_all()
        return empty_pb2.Empty()

    def Watch(self, request: link_pb2.WatchRequest, context: Any) -> Iterator[link_pb2.Link]:
        last = None
        while context.is_active():
            with self._changed:
                current = self.links.get(request.target_id, link_pb2.Link(target_id=request.target_id))
                if current != last:
                    last = current
                    yield current
                self._changed.wait(0.2)


@dataclasses.dataclass
class TapaProcess:
    procs: Any
    name: str
    socket: str
    proc: Any

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"


def start_tapa(procs: Any, tmp_path: pathlib.Path, name: str, nsp_address: str, proxy_dir: pathlib.Path, *,
               entry_timeout: str = "1s", extra: tuple[str, ...] = ()) -> TapaProcess:
    """``meridio run tapa`` in the host namespace, its proxy socket template under ``proxy_dir``."""
    sock = str(tmp_path / f"{name}.sock")
    proc = procs.meridio("run", "tapa", "--name", name, "--socket", f"unix:{sock}", "--nsp-service", nsp_address,
                         "--proxy-socket", str(proxy_dir / "{conduit}" / "link.sock"), "--nsp-entry-timeout",
                         entry_timeout, "--log-level", "DEBUG", *extra, name=f"tapa-{name}")
    deadline = time.monotonic() + 15
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"TAPA {name} did not start: {procs.output(proc)}")
        time.sleep(0.05)
    wait_serving(f"unix:{sock}", proc, service="Liveness")
    return TapaProcess(procs, name, sock, proc)


def stream_pb(stream: str, conduit: str = "conduit-a-1", trench: str = "trench-a") -> tap_pb2.Stream:
    return tap_pb2.Stream(name=stream, conduit=tap_pb2.Conduit(name=conduit, trench=tap_pb2.Trench(name=trench)))


def tap_call(tapa: TapaProcess, method: str, stream: tap_pb2.Stream) -> None:
    with grpc.insecure_channel(tapa.address) as channel:
        getattr(tap_pb2_grpc.TapStub(channel), method)(stream, timeout=5)


def statuses(response: tap_pb2.StreamResponse) -> dict[str, str]:
    return {s.stream.name: STATUS.Name(s.status) for s in response.streamStatus}


def wait_statuses(tapa: TapaProcess, expected: dict[str, str], timeout: float = 20.0) -> None:
    """Watch the TAPA until its stream list is exactly ``expected`` (stream name -> status name)."""
    last: dict[str, str] | None = None
    with grpc.insecure_channel(tapa.address) as channel:
        call = tap_pb2_grpc.TapStub(channel).Watch(tap_pb2.Stream(), timeout=timeout)
        try:
            for response in call:
                last = statuses(response)
                if last == expected:
                    return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                raise
        finally:
            call.cancel()
    pytest.fail(f"TAPA {tapa.name}: streams never became {expected} within {timeout}s (last: {last})")


def nsp_targets(nsp_address: str, stream: str, conduit: str = "conduit-a-1", trench: str = "trench-a"
                ) -> list[targetregistry_pb2.Target]:
    """Every DEFAULT target of the stream in the NSP, any status."""
    flt = targetregistry_pb2.Target(status=targetregistry_pb2.Target.ANY, type=targetregistry_pb2.Target.DEFAULT,
                                    stream=model_pb2.Stream(name=stream, conduit=model_pb2.Conduit(
                                        name=conduit, trench=model_pb2.Trench(name=trench))))
    with grpc.insecure_channel(nsp_address) as channel:
        call = targetregistry_pb2_grpc.TargetRegistryStub(channel).Watch(flt, timeout=5)
        try:
            return list(next(iter(call)).targets)
        finally:
            call.cancel()


def enabled(nsp_address: str, stream: str, **kw: str) -> dict[str, str]:
    """First IP -> identifier of the ENABLED targets of ``stream``."""
    return {t.ips[0]: t.context["identifier"] for t in nsp_targets(nsp_address, stream, **kw)
            if t.status == targetregistry_pb2.Target.ENABLED}
