"""The in-kernel data path with real packets: client -> LB -> targets, IPv4 and IPv6.

Real: network namespaces, veths, a bridge, nftables and policy routing programmed by the load
balancer's own Reconciler, real TCP/UDP sockets in the client and responders in the targets.
Nothing is faked.
"""
from __future__ import annotations

import collections
from typing import Any, Iterator

import pytest

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
