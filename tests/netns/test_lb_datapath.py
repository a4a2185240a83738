"""The in-kernel data path with real packets: client -> LB -> targets, IPv4 and IPv6.

Real: network namespaces, veths, a bridge, nftables and policy routing programmed by the load
balancer's own Reconciler, real TCP/UDP sockets in the client and responders in the targets.
Nothing is faked.
"""
from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from meridio.kernel import netns as netnsmod
from meridio.kernel.netlink import Netlink
from meridio.loadbalancer import flows as flowsmod
from meridio.loadbalancer.flows import TargetSpec
from meridio.loadbalancer.reconciler import Desired, StreamInput
from tests.netns import lb_topology as lbt

PORT = 5000
VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])


def vip(version: int, n: int = 0) -> str:
    return lbt.VIPS[version][n]


flow = lbt.model_flow


@pytest.fixture
def topo(netns: Any, procs: Any) -> lbt.LbTopology:
    topology = lbt.build(netns, targets=4)
    lbt.start_responders(procs, topology, [PORT, 4000, 4002, 7000])
    return topology


@pytest.fixture
def lb(topo: lbt.LbTopology) -> Iterator[lbt.LbUnderTest]:
    under_test = lbt.LbUnderTest(topo)
    yield under_test
    under_test.close()


@VERSIONS
def test_400_tcp_connections_and_400_udp_exchanges_reach_every_target(version: int, topo: lbt.LbTopology,
                                                                     lb: lbt.LbUnderTest) -> None:
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2, 3, 4]})
    tcp = lbt.tcp_names(topo.client, vip(version), PORT, range(20000, 20400))
    udp = [r[0] for r in lbt.udp_names(topo.client, vip(version), PORT, range(30000, 30400))]
    assert None not in tcp and None not in udp
    assert set(collections.Counter(tcp)) == {"t1", "t2", "t3", "t4"}
    assert {name.split()[0] for name in udp} == {"t1", "t2", "t3", "t4"}  # type: ignore[union-attr]


@VERSIONS
def test_the_same_5_tuple_always_reaches_the_same_target(version: int, topo: lbt.LbTopology,
                                                         lb: lbt.LbUnderTest) -> None:
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2, 3, 4]})
    first = lbt.tcp_names(topo.client, vip(version), PORT, range(21000, 21100))
    again = lbt.tcp_names(topo.client, vip(version), PORT, range(21000, 21100))
    assert None not in first and first == again
    udp = lbt.udp_names(topo.client, vip(version), PORT, range(31000, 31050), sizes=(16, 16, 16))
    assert all(len({r.split()[0] for r in replies if r}) == 1 and None not in replies for replies in udp)


@VERSIONS
def test_a_removed_target_gets_no_new_flows_and_other_flows_stay_put(version: int, topo: lbt.LbTopology,
                                                                    lb: lbt.LbUnderTest) -> None:
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2, 3, 4]})
    sports = range(22000, 22400)
    before = dict(zip(sports, lbt.tcp_names(topo.client, vip(version), PORT, sports)))
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2, 4]})
    after = dict(zip(sports, lbt.tcp_names(topo.client, vip(version), PORT, sports)))
    assert None not in after.values()
    assert "t3" not in after.values() and "t3" in before.values()
    kept = [sp for sp in sports if before[sp] != "t3"]
    moved = [sp for sp in kept if after[sp] != before[sp]]
    assert len(moved) <= 0.03 * len(kept), f"{len(moved)} of {len(kept)} flows of remaining targets moved"
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2, 3, 4]})
    assert dict(zip(sports, lbt.tcp_names(topo.client, vip(version), PORT, sports))) == before


def test_each_active_target_gets_a_fwmark_rule_and_a_default_route_per_family(topo: lbt.LbTopology,
                                                                             lb: lbt.LbUnderTest) -> None:
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1, 2]})
    for family in ("-4", "-6"):
        rules = netnsmod.run(topo.lb, ["ip", family, "rule", "show"]).stdout
        assert "90:\tfrom all fwmark 0x1389 lookup 5001" in rules and "fwmark 0x138a lookup 5002" in rules
    table = netnsmod.run(topo.lb, ["ip", "route", "show", "table", "5001"]).stdout
    assert "default via 169.254.101.1 dev tgt0" in table
    assert "default via 2001:db8:101::2 dev tgt0" in netnsmod.run(topo.lb, ["ip", "-6", "route", "show", "table",
                                                                           "5002"]).stdout
    lb.program(flows=[flow("all", dports=(str(PORT),))], streams={"stream-a": [1]})
    assert "lookup 5002" not in netnsmod.run(topo.lb, ["ip", "rule", "show"]).stdout
    assert netnsmod.run(topo.lb, ["ip", "route", "show", "table", "5002"], check=False).stdout == ""


def test_a_target_on_no_connected_subnet_is_pending_until_its_subnet_appears(topo: lbt.LbTopology,
                                                                             lb: lbt.LbUnderTest) -> None:
    with Netlink(topo.targets[4]) as nl:  # t4 moves to a subnet the LB has no address in yet
        nl.add_address("eth0", "169.254.102.4/24")
        nl.add_address("eth0", "2001:db8:102::4/64")
    far = TargetSpec(4, (ipaddress.ip_address("169.254.102.4"), ipaddress.ip_address("2001:db8:102::4")))
    desired = Desired(vips=tuple(flowsmod.parse_network(v) for v in lbt.VIPS[4] + lbt.VIPS[6]),
                      streams=(StreamInput("stream-a", 100, (lb.target(1), far)),),
                      flows=(flowsmod.flow_spec(flow("all", dports=(str(PORT),))),))
    report = lb.reconciler.reconcile(desired)
    assert report.active == {"stream-a": (1,)} and report.pending == {"stream-a": (4,)}
    assert set(lbt.tcp_names(topo.client, vip(4), PORT, range(23000, 23050))) == {"t1"}
    with Netlink(topo.lb) as nl:
        nl.add_address(topo.bridge, "169.254.102.254/24")
        nl.add_address(topo.bridge, "2001:db8:102::fe/64")
    report = lb.reconciler.reconcile(desired)
    assert report.active == {"stream-a": (1, 4)} and report.pending == {"stream-a": ()}
    assert set(lbt.tcp_names(topo.client, vip(6), PORT, range(23000, 23050))) == {"t1", "t4"}


def test_a_route_that_vanishes_with_its_link_is_reported_lost(topo: lbt.LbTopology, lb: lbt.LbUnderTest) -> None:
    desired = Desired(vips=tuple(flowsmod.parse_network(v) for v in lbt.VIPS[4] + lbt.VIPS[6]),
                      streams=(StreamInput("stream-a", 100, (lb.target(1), lb.target(2))),),
                      flows=(flowsmod.flow_spec(flow("all", dports=(str(PORT),))),))
    report = lb.reconciler.reconcile(desired)
    assert lb.reconciler.lost_routes(report, desired) == []
    with Netlink(topo.lb) as nl:
        nl.set_link(topo.bridge, up=False)
    assert lb.reconciler.lost_routes(report, desired) == [5001, 5002]
    report = lb.reconciler.reconcile(desired)
    assert report.active == {"stream-a": ()} and report.pending == {"stream-a": (1, 2)}


def test_a_vip_prefix_carries_traffic_to_every_address_in_it(topo: lbt.LbTopology, lb: lbt.LbUnderTest) -> None:
    prefixes = ("198.51.100.0/30", "2001:db8:f:1::/126")
    for ns in topo.targets.values():
        with Netlink(ns) as nl:
            for address in ("198.51.100.1/32", "198.51.100.2/32", "2001:db8:f:1::1/128", "2001:db8:f:1::2/128"):
                nl.add_address("lo", address)
    lb.program(flows=[flow("prefixes", dports=(str(PORT),), vips=prefixes)], streams={"stream-a": [1, 2, 3, 4]},
               vips=prefixes)
    for address in ("198.51.100.1", "198.51.100.2", "2001:db8:f:1::1", "2001:db8:f:1::2"):
        got = lbt.tcp_names(topo.client, address, PORT, range(25000, 25060))
        assert None not in got and len(set(got)) > 1, address
