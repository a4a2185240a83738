"""A conduit across nodes: an LB replica on node-1 and the proxy of node-2 joined by a VXLAN tunnel over
the cluster network, each end made by its own component in its own namespace; VIP traffic from the
client reaches a target on node-2 through it, IPv4 and IPv6, with mutual TLS on every connection.

Real: every process (LB daemon, proxy, TAPA, example target, NSP, IPAM), the kernel (namespaces, the
underlay and node bridges, VXLAN, nftables) and TLS. Faked, as in the other conduit tests: the frontend's
FRONTEND registration that unblocks the LB. NSP and IPAM listen on unix sockets of the bed (the data path
is what this tier checks; the pod network's TCP services are in ``test_runtime_cluster``).
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from meridio.runtime.local import cluster, topology
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming
from tests.conftest import NetnsFactory
from tests.netns.conduit_support import conduit_env  # noqa: F401
from tests.netns.test_conduit_tapa import _assert_all_reach, _wait_reach, _wait_streams

pytestmark = pytest.mark.netns


class Cluster:
    def __init__(self, prefix: str, mtu: int | None = None) -> None:
        self.naming = Naming(prefix)
        section = {"cluster": {"mtu": mtu}} if mtu else {}
        self.env = envmod.parse({"name": "vx", "nodes": ["node-1", "node-2"], **section})  # names: the bed's prefix
        self.plan = cluster.plan(self.env)

    def wire(self, node: str, host: int) -> Callable[[str], None]:
        """Give a pod namespace its ``eth0`` on ``node`` and a route to the pod network (not a default
        route: the bed's LB has its default route towards the client)."""
        def wire(ns: str) -> None:
            n = self.plan.node(node)
            topology.ensure_pod_network(topology.pod_link(self.naming, node, ns, n.pod_addresses(host),
                                                          mtu=self.env.cluster.mtu), ())
            for net, gw in ((self.env.cluster.pod_ipv4, n.gateways[0]), (self.env.cluster.pod_ipv6, n.gateways[1])):
                fam = ["-6"] if net.version == 6 else []
                subprocess.run(["ip", "-n", ns, *fam, "route", "replace", str(net), "via", str(gw.ip)], check=True)
        return wire

    def ips(self, node: str, host: int) -> str:
        return ",".join(str(a.ip) for a in self.plan.node(node).pod_addresses(host))


@pytest.fixture
def nodes(netns: NetnsFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(netns.prefix, getattr(request, "param", None))
    try:
        topology.ensure_cluster(c.env, c.naming)
        yield c
    finally:
        topology.remove_namespaces(c.naming)


def _vxlan(ns: str) -> dict[str, dict[str, object]]:
    out = json.loads(subprocess.run(["ip", "-j", "-d", "-n", ns, "link", "show", "type", "vxlan"], check=True,
                                    capture_output=True, text=True).stdout)
    return {link["ifname"]: link["linkinfo"]["info_data"] for link in out}


def test_vip_traffic_reaches_a_target_on_another_node_through_a_vxlan_conduit(conduit_env, nodes) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(tls=True)
    lb = env.add_lb("lb-1", real=True, extra=("--host", "node-1", "--pod-ip", nodes.ips("node-1", 2)),
                    before_start=nodes.wire("node-1", 2))
    proxy = env.add_proxy("node-2", extra=("--pod-ip", nodes.ips("node-2", 2)), before_start=nodes.wire("node-2", 2))
    target = env.add_target_pod("target-1", "node-2")
    target.target("open", "stream-a-i")
    _wait_streams(target, {"stream-a-i": "OPEN"})
    _wait_reach(env, {"target-1"})
    _assert_all_reach(env, {"target-1"})  # 400 connections per family, 0 lost
    # Each end is a VXLAN interface in its own namespace, one VNI, each pointing at the other pod.
    [(port, here)] = _vxlan(proxy.ns).items()
    [(end, there)] = _vxlan(lb.ns).items()
    assert here["id"] == there["id"] and here["port"] == there["port"] == 4789
    assert (here["local"], here["remote"]) == (there["remote"], there["local"]) == ("10.244.2.2", "10.244.1.2")
    assert end.startswith(lb.ifprefix + "-") and port.startswith("pl-")
    veths = json.loads(subprocess.run(["ip", "-j", "-n", lb.ns, "link", "show", "type", "veth"], check=True,
                                      capture_output=True, text=True).stdout)
    assert not [v for v in veths if v["ifname"].startswith(lb.ifprefix)], "no veth from the proxy of node-2"
    lb_end = {a["local"] for a in json.loads(subprocess.run(["ip", "-j", "-n", lb.ns, "addr", "show", "dev", end],
                                                             check=True, capture_output=True, text=True).stdout)[0][
        "addr_info"]}
    assert any(ipaddress.ip_address(a) in ipaddress.ip_network("172.16.0.0/16") for a in lb_end), lb_end


def _mtu(ns: str, dev: str) -> int:
    return int(json.loads(subprocess.run(["ip", "-j", "-n", ns, "link", "show", "dev", dev], check=True,
                                         capture_output=True, text=True).stdout)[0]["mtu"])


@pytest.mark.parametrize("nodes", [1500], indirect=True, ids=["underlay-1500"])
def test_with_a_1500_underlay_every_conduit_interface_takes_the_vxlan_mtu_and_a_bulk_transfer_crosses(
        conduit_env, nodes, procs) -> None:  # type: ignore[no-untyped-def]
    mtu = nodes.env.cluster.effective_conduit_mtu
    assert mtu == 1450  # 1500 - 50 (tunnels over IPv4)
    env = conduit_env(tls=True)
    lb = env.add_lb("lb-1", real=True, extra=("--host", "node-1", "--pod-ip", nodes.ips("node-1", 2)),
                    before_start=nodes.wire("node-1", 2))
    proxy = env.add_proxy("node-2", mtu=mtu, extra=("--pod-ip", nodes.ips("node-2", 2)),
                          before_start=nodes.wire("node-2", 2))
    target = env.add_target_pod("target-1", "node-2")
    target.target("open", "stream-a-i")
    _wait_streams(target, {"stream-a-i": "OPEN"})
    _wait_reach(env, {"target-1"})
    [end] = _vxlan(lb.ns)
    [port] = _vxlan(proxy.ns)
    target_if = next(n for n in json.loads(subprocess.run(["ip", "-j", "-n", target.ns, "link"], check=True,
                                                           capture_output=True, text=True).stdout)
                     if n["ifname"] not in ("lo",))["ifname"]
    assert {_mtu(lb.ns, end), _mtu(proxy.ns, port), _mtu(proxy.ns, "bridge0"), _mtu(target.ns, target_if)} == {mtu}
    env.procs.stop(target.example)  # port 4000 (the conduit's TCP flow) for iperf instead
    for vip, family in (("203.0.113.1", []), ("2001:db8::1", ["-V"])):
        server = procs.start(["iperf", "-s", *family, "-B", vip, "-p", "4000"], ns=target.ns, name="iperf-s")
        try:
            for _ in range(50):  # until it listens
                out = subprocess.run(["ip", "netns", "exec", target.ns, "ss", "-ltnH", "sport", "= :4000"],
                                     capture_output=True, text=True).stdout
                if out.strip():
                    break
                time.sleep(0.1)
            done = subprocess.run(["ip", "netns", "exec", env.client(), "iperf", *family, "-c", vip, "-p", "4000",
                                   "-t", "2", "-y", "C"], capture_output=True, text=True, timeout=60)
            sent = int(done.stdout.strip().splitlines()[-1].split(",")[-2])
            assert sent > 20_000_000, (vip, done.stdout, done.stderr)  # full-size segments, not a stall
        finally:
            procs.stop(server)
