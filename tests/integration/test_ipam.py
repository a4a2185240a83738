"""IPAM and NSP as real processes on loopback: conduits come from the NSP's config file, allocations
persist in sqlite across a SIGKILL, a removed conduit takes its allocations with it.

Real: ``meridio run nsp`` and ``meridio run ipam`` processes, gRPC over 127.0.0.1, sqlite files under
tmp_path. Nothing is faked.
"""
from __future__ import annotations

import pathlib
import signal
import subprocess
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.api.pb.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from meridio.api.pb.nsp.v1 import model_pb2
from tests.conftest import wait_for
from tests.integration import nsp_support
from tests.integration.metrics_support import scrape, value

CONFIG = """\
trench: |
  name: trench-a
streams: {items: []}
flows: {items: []}
vips: {items: []}
attractors: {items: []}
gateways: {items: []}
conduits: |
  items:
  - {name: conduit-a-1, trench: trench-a}
  - {name: conduit-a-2, trench: trench-a}
"""
CONFIG_WITH_3 = CONFIG + "  - {name: conduit-a-3, trench: trench-a}\n"
CONFIG_WITHOUT_2 = CONFIG.replace("  - {name: conduit-a-2, trench: trench-a}\n", "")


class Ipam:
    """One ``meridio run ipam`` process and a client; :meth:`kill` + :meth:`start` restart it."""

    def __init__(self, procs: Any, tmp_path: pathlib.Path, nsp: str, *extra: str) -> None:
        self.procs = procs
        self.port = nsp_support.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.datasource = tmp_path / "ipam" / "registry.db"
        self.args = ["run", "ipam", "--port", str(self.port), "--listen-address", "127.0.0.1",
                     "--trench-name", "trench-a", "--nsp-service", nsp, "--datasource", str(self.datasource),
                     "--log-level", "DEBUG", *extra]
        self.channel = grpc.insecure_channel(self.address)
        self.stub = ipam_pb2_grpc.IpamStub(self.channel)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.procs.meridio(*self.args, name="ipam")
        health = health_pb2_grpc.HealthStub(self.channel)

        def live() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.procs.output(self.proc)
            try:
                return all(health.Check(health_pb2.HealthCheckRequest(service=probe), timeout=0.5).status
                           == health_pb2.HealthCheckResponse.SERVING for probe in ("Startup", "Liveness"))
            except grpc.RpcError:
                return False

        wait_for(live, timeout=15, message=f"IPAM at {self.address} live")

    def kill(self) -> None:
        assert self.proc is not None
        self.procs.stop(self.proc, signal.SIGKILL)

    def allocate(self, name: str, conduit: str = "conduit-a-1", node: str = "node-1", family: int = 0,
                 timeout: float = 10.0) -> str:
        reply = self.stub.Allocate(child(name, conduit, node, family), timeout=timeout)
        return f"{reply.address}/{reply.prefixLength}"

    def release(self, name: str, conduit: str = "conduit-a-1", node: str = "node-1", family: int = 0) -> None:
        self.stub.Release(child(name, conduit, node, family), timeout=5)

    def allocatable(self, conduit: str) -> bool:
        """Whether ``conduit`` has a prefix now (Allocate does not wait for it past a short deadline)."""
        try:
            self.allocate("probe", conduit=conduit, node="probe-node", timeout=0.3)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE), exc
            return False
        self.release("probe", conduit=conduit, node="probe-node")
        return True


def child(name: str, conduit: str, node: str, family: int) -> ipam_pb2.Child:
    return ipam_pb2.Child(name=name, subnet=ipam_pb2.Subnet(
        conduit=model_pb2.Conduit(name=conduit, trench=model_pb2.Trench(name="trench-a")), node=node,
        ipFamily=family))  # type: ignore[arg-type]


@pytest.fixture
def nsp(procs: Any, tmp_path: pathlib.Path) -> nsp_support.NspProcess:
    return nsp_support.launch_nsp(procs, tmp_path, CONFIG)


@pytest.fixture
def ipam(procs: Any, tmp_path: pathlib.Path, nsp: nsp_support.NspProcess) -> Any:
    server = Ipam(procs, tmp_path, nsp.address)
    server.start()
    yield server
    server.channel.close()


def test_conduits_of_the_trench_get_allocations_in_both_families(ipam: Ipam) -> None:
    assert ipam.allocate("bridge") == "172.16.0.1/24"
    assert ipam.allocate("bridge", family=1) == "fd00::1/64"
    assert ipam.allocate("c1-src") == "172.16.0.2/24"
    assert ipam.allocate("bridge", node="node-2") == "172.16.1.1/24"
    assert ipam.allocate("bridge", conduit="conduit-a-2") == "172.16.16.1/24"
    assert ipam.allocate("bridge", conduit="conduit-a-2", family=1) == "fd00:0:0:100::1/64"


def test_conduit_added_to_the_nsp_config_becomes_allocatable(ipam: Ipam, nsp: nsp_support.NspProcess) -> None:
    assert not ipam.allocatable("conduit-a-3")
    nsp.write_config(CONFIG_WITH_3)
    assert ipam.allocate("bridge", conduit="conduit-a-3") == "172.16.32.1/24"


def test_restarted_ipam_returns_the_same_allocations(ipam: Ipam, nsp: nsp_support.NspProcess) -> None:
    before = [ipam.allocate(name) for name in ("a", "b", "c")] + [ipam.allocate("a", family=1)]
    ipam.release("b")
    ipam.kill()
    nsp.proc.terminate()  # the restarted IPAM must serve from its own store, without the NSP
    nsp.proc.wait(10)
    ipam.start()
    # Asked in another order than allocated: a recomputation from scratch would answer differently.
    assert ipam.allocate("c") == before[2] == "172.16.0.3/24"
    assert ipam.allocate("a", family=1) == before[3]
    assert ipam.allocate("a") == before[0]
    assert ipam.allocate("d") == "172.16.0.2/24"  # b's released address, first fit


def test_removed_conduit_loses_its_allocations_after_the_release_grace(
        procs: Any, tmp_path: pathlib.Path, nsp: nsp_support.NspProcess) -> None:
    ipam = Ipam(procs, tmp_path, nsp.address, "--release-grace", "1s")
    ipam.start()
    ipam.allocate("bridge", conduit="conduit-a-1")
    assert [ipam.allocate(n, conduit="conduit-a-2") for n in ("x", "y")] == ["172.16.16.1/24", "172.16.16.2/24"]
    nsp.write_config(CONFIG_WITHOUT_2)
    wait_for(lambda: not ipam.allocatable("conduit-a-2"), timeout=10, message="conduit-a-2 removed")
    nsp.write_config(CONFIG)
    assert ipam.allocate("y", conduit="conduit-a-2") == "172.16.16.1/24"
    assert ipam.allocate("bridge", conduit="conduit-a-1") == "172.16.0.1/24"


def test_a_conduit_gone_from_the_configuration_for_a_moment_keeps_every_allocation(
        ipam: Ipam, nsp: nsp_support.NspProcess) -> None:
    """The issue's attack: the configuration lost its conduits (a bad file, an NSP restarted on a missing
    one) and IPAM released them; a new client then got an address an earlier one still held."""
    held = [ipam.allocate(n, conduit="conduit-a-2") for n in ("x", "y")]
    nsp.procs.stop(nsp.proc, signal.SIGTERM)
    nsp.config_file.unlink()
    nsp.restart()  # an NSP that restarted without its file serves no conduits at all
    wait_for(lambda: "conduitUnlisted" in ipam.procs.output(ipam.proc), timeout=20,
             message="IPAM saw the NSP list no conduits")
    nsp.write_config(CONFIG)
    assert ipam.allocate("z", conduit="conduit-a-2") not in held  # a new client first: x's address is still x's
    assert [ipam.allocate(n, conduit="conduit-a-2") for n in ("x", "y")] == held


def test_idle_allocations_are_garbage_collected(procs: Any, tmp_path: pathlib.Path,
                                                nsp: nsp_support.NspProcess) -> None:
    ipam = Ipam(procs, tmp_path, nsp.address, "--garbage-collection-interval", "500ms",
                "--garbage-collection-threshold", "1s")
    ipam.start()
    assert [ipam.allocate(n) for n in ("a", "b")] == ["172.16.0.1/24", "172.16.0.2/24"]
    assert ipam.proc is not None
    wait_for(lambda: ipam.procs.output(ipam.proc).count('"prefixCollected"') >= 3, timeout=10,
             message="node-1, a and b collected")
    assert ipam.allocate("b") == "172.16.0.1/24"
    ipam.channel.close()


def test_a_scrape_shows_prefixes_in_use_capacity_and_allocations(procs: Any, tmp_path: pathlib.Path,
                                                                   nsp: nsp_support.NspProcess) -> None:
    port = nsp_support.free_port()
    ipam = Ipam(procs, tmp_path, nsp.address, "--metrics-enabled", "true", "--metrics-port", str(port))
    ipam.start()
    wait_for(lambda: value(scrape(port), "meridio_ipam_prefixes_in_use", family="ipv4", level="conduit") == 2,
             message="both conduits of the NSP in the metrics")
    ipam.allocate("bridge")
    ipam.allocate("c1-src")
    ipam.allocate("bridge", node="node-2")
    with pytest.raises(grpc.RpcError):
        ipam.allocate("x", family=7)
    samples = scrape(port)
    pool = {"trench": "trench-a", "family": "ipv4", "conduit": "conduit-a-1"}
    assert value(samples, "meridio_ipam_prefixes_in_use", **pool, level="node") == 2
    assert value(samples, "meridio_ipam_prefixes_in_use", **pool, level="address") == 3
    assert value(samples, "meridio_ipam_prefix_capacity", **pool, level="node") == 16
    assert value(samples, "meridio_ipam_prefix_capacity", **pool, level="address") == 2 * 254
    assert value(samples, "meridio_ipam_allocations_total", result="allocated") == 3
    assert value(samples, "meridio_ipam_allocations_total", result="refused") == 1
    ipam.channel.close()


def test_sigterm_stops_the_ipam_cleanly(ipam: Ipam) -> None:
    assert ipam.proc is not None
    assert ipam.procs.stop(ipam.proc, signal.SIGTERM) == 0
    assert '"ipamStopping"' in ipam.procs.output(ipam.proc)


@pytest.mark.parametrize("content,says", [(b"not a database" * 100, "is not a usable sqlite database"),
                                          (b"", "is empty (0 bytes)")], ids=["corrupt", "0-bytes"])
def test_corrupt_or_empty_registry_file_stops_the_start_with_one_line(procs: Any, tmp_path: pathlib.Path,
                                                                      content: bytes, says: str) -> None:
    server = Ipam(procs, tmp_path, "127.0.0.1:1")
    server.datasource.parent.mkdir(parents=True)
    server.datasource.write_bytes(content)
    proc = procs.meridio(*server.args, name="ipam")
    assert proc.wait(15) == 1
    output = procs.output(proc)
    assert f"meridio run ipam: IPAM registry {server.datasource} {says}" in output
    assert "restore a backup of it, or move it aside" in output
    assert "Traceback" not in output
    assert server.datasource.read_bytes() == content
