"""The cluster network on the real kernel: two nodes on an underlay segment, a pod on each, and an NSP
reached from the other node over TCP with mutual TLS at its service name.

Real: namespaces, veths, bridges, routes, the NSP process, TLS (certificates from the runtime's CA) and
name resolution through the pod's ``/etc/netns/<pod>/hosts`` (bind-mounted by ``ip netns exec``).
Nothing is faked. Every namespace is named after a unique prefix and removed at the end, with its
``/etc/netns`` directory.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import cluster, pki, portforward, topology
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming, port_name
from tests.integration import nsp_support

pytestmark = pytest.mark.netns


class Bed:
    def __init__(self, prefix: str) -> None:
        self.naming = Naming(prefix)
        self.env = envmod.parse({"name": prefix, "prefix": prefix, "nodes": ["node-1", "node-2"]})
        self.plan = cluster.plan(self.env)

    def pod(self, name: str, node: str, host: int) -> str:
        ns = self.naming.pod_ns(name)
        topology.ensure_namespace(ns)
        n = self.plan.node(node)
        topology.ensure_pod_network(topology.pod_link(self.naming, node, ns, n.pod_addresses(host)), n.gateways)
        return ns

    def address(self, node: str, host: int, family: int) -> str:
        return str(self.plan.node(node).pod_addresses(host)[0 if family == 4 else 1].ip)


@pytest.fixture
def bed() -> Iterator[Bed]:
    b = Bed("c" + uuid.uuid4().hex[:5])
    try:
        topology.ensure_cluster(b.env, b.naming)
        yield b
    finally:
        topology.remove_namespaces(b.naming)


def _ping(ns: str, addr: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr],
                          capture_output=True).returncode == 0


def _ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_pod_on_node_1_reaches_a_pod_on_node_2_over_the_underlay_only(bed: Bed, family: int) -> None:
    a, b = bed.pod("pod-a", "node-1", 2), bed.pod("pod-b", "node-2", 2)
    addr_b = bed.address("node-2", 2, family)
    fam = ["-6"] if family == 6 else []
    assert _ping(a, addr_b) and _ping(b, bed.address("node-1", 2, family))
    via = "198.18.0.2" if family == 4 else "fd00:198:18::2"
    assert f"via {via} dev ul0" in _ip(bed.naming.node_ns("node-1"), *fam, "route", "get", addr_b)
    assert "dev eth0" in _ip(a, *fam, "route", "get", addr_b)
    cable = port_name(bed.naming.node_ns("node-2"), "n")  # node-2's port on the underlay segment
    _ip(bed.naming.underlay_ns, "link", "set", cable, "down")  # the underlay is the only way
    assert not _ping(a, addr_b)
    _ip(bed.naming.underlay_ns, "link", "set", cable, "up")
    deadline = time.monotonic() + 10
    while not _ping(a, addr_b):
        assert time.monotonic() < deadline, "the path did not come back with the underlay link"


def test_building_the_cluster_and_a_pod_again_changes_nothing(bed: Bed) -> None:
    a = bed.pod("pod-a", "node-1", 3)
    node = bed.naming.node_ns("node-1")

    def state() -> tuple[str, ...]:  # links by index, name and MAC (a bridge's operstate settles on its own)
        links = re.sub(r" state \S+", "", _ip(node, "-o", "link"))
        return links, _ip(node, "route"), _ip(node, "-6", "route"), _ip(a, "-o", "addr"), _ip(a, "route")
    before = state()
    topology.ensure_cluster(bed.env, bed.naming)
    bed.pod("pod-a", "node-1", 3)
    assert state() == before


_CLIENT = textwrap.dedent('''
    import asyncio, sys, grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from meridio.common import grpcutil, identity, tls
    async def main(address, tls_dir):
        t = tls.Tls(__import__("pathlib").Path(tls_dir)) if tls_dir else None
        async with grpcutil.channel(address, tls=t, server=identity.Component.NSP) as ch:
            try:
                r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                print("SERVING" if r.status == 1 else f"STATUS {r.status}")
            except grpc.aio.AioRpcError as exc:
                print(exc.code().name)
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
''')


async def _check_forwarded(path: pathlib.Path, ns: str, tls_dir: pathlib.Path) -> str:
    fwd = portforward.PortForward(path, ns, "127.0.0.1", cluster.NSP_PORT)
    await fwd.start()
    try:
        async with grpcutil.channel(f"unix:{path}", tls=tlsmod.Tls(tls_dir), server=idm.Component.NSP) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            return "SERVING" if reply.status == health_pb2.HealthCheckResponse.SERVING else str(reply.status)
    finally:
        await fwd.close()


def test_the_nsp_is_reached_from_another_node_over_tcp_with_mutual_tls_and_refuses_plain(
        bed: Bed, procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_ns, client_ns = bed.pod("nsp-x", "node-1", 2), bed.pod("tapa-y", "node-2", 5)
    service = {cluster.nsp_service("trench-a"): (bed.plan.node("node-1").pod_addresses(2)[0].ip,)}
    netnsmod.write_etc(client_ns, "hosts", cluster.hosts_file("tapa-y", [], service))
    ca = pki.Ca.create(bed.env.name, now=time.time())
    dirs = {}
    for component, pod, node in ((idm.Component.NSP, "nsp-x", None), (idm.Component.TAPA, "tapa-y", "node-2")):
        cert, key = ca.issue(idm.Identity(cluster=bed.env.name, component=component, pod=pod,
                                          trench="trench-a" if component is idm.Component.NSP else None, node=node),
                             now=time.time())
        dirs[component] = tmp_path / component.value
        pki.write_files(dirs[component], cert=cert, key=key, ca=ca.cert_pem)
    config = tmp_path / "configuration.yaml"
    nsp_support.write_config(config, nsp_support.SAMPLE_CONFIG)
    procs.meridio("run", "nsp", "--listen-address", "[::]", "--port", "7778", "--config-file", str(config),
                  "--datasource", str(tmp_path / "registry.db"), ns=nsp_ns, name="nsp",
                  env={"MERIDIO_TLS_DIR": str(dirs[idm.Component.NSP])})
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)

    def client(*args: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, str(script), *args],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GRPC_DNS_RESOLVER": "native"})  # as the runtime sets it
        return done.stdout.strip() or done.stderr.strip()[-300:]

    address = "nsp-service-trench-a:7778"
    deadline = time.monotonic() + 20
    while (answer := client(address, str(dirs[idm.Component.TAPA]))) != "SERVING":
        assert time.monotonic() < deadline, answer
    assert client(address) == "UNAVAILABLE"  # the same caller without TLS: the handshake is refused
    # The runtime, off the pod network, through its port-forward socket: TLS end to end.
    assert asyncio.run(_check_forwarded(tmp_path / "nsp.sock", nsp_ns, dirs[idm.Component.TAPA])) == "SERVING"
    assert not (tmp_path / "nsp.sock").exists(), "the forward's socket goes with it"
    assert os.path.isdir(os.path.join(netnsmod.NETNS_ETC_DIR, client_ns))
    topology.remove_namespaces(bed.naming)
    assert not os.path.exists(os.path.join(netnsmod.NETNS_ETC_DIR, client_ns))
