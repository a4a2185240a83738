"""Flow classification with real packets: priorities, port ranges, ``any``, source subnets, byte matches,
no match -> drop, SCTP (crafted with scapy: this kernel has no SCTP sockets), rejected flows.

Real: namespaces, nftables and policy routing programmed by the Reconciler, TCP/UDP sockets, raw
Ethernet frames for SCTP, nft counters in the targets. Each stream owns one target, so the target
that answers tells which flow (and stream) won.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit

from meridio.kernel.netlink import Netlink
from meridio.loadbalancer import flows as flowsmod
from tests.netns import lb_topology as lbt

flow = lbt.model_flow
VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
STREAMS = {"stream-a": [1], "stream-b": [2], "stream-c": [3]}
OTHER_CLIENT = {4: "192.0.2.200", 6: "2001:db8:e::200"}


@pytest.fixture
def topo(netns: Any, procs: Any) -> lbt.LbTopology:
    topology = lbt.build(netns, targets=3)
    with Netlink(topology.client) as nl:
        nl.add_address("ext0", f"{OTHER_CLIENT[4]}/24")
        nl.add_address("ext0", f"{OTHER_CLIENT[6]}/64")
    lbt.start_responders(procs, topology, [4000, 4002, 5000, 7000])
    return topology


@pytest.fixture
def lb(topo: lbt.LbTopology) -> Iterator[lbt.LbUnderTest]:
    under_test = lbt.LbUnderTest(topo)
    yield under_test
    under_test.close()


def one_tcp(topo: lbt.LbTopology, version: int, port: int, sport: int = 0) -> str | None:
    return lbt.tcp_names(topo.client, lbt.VIPS[version][0], port, [sport or None], timeout=0.7)[0]


def one_udp(topo: lbt.LbTopology, version: int, port: int, *, sport: int | None = None,
            source: str | None = None) -> str | None:
    def exchange() -> str | None:
        import socket

        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.settimeout(0.7)
            s.bind((source or lbt.CLIENT[version], sport or 0))
            s.sendto(b"hello", (lbt.VIPS[version][0], port))
            try:
                return s.recv(256).decode().split()[0]
            except TimeoutError:
                return None

    return lbt.in_netns(topo.client, exchange)


@VERSIONS
def test_the_flow_with_the_higher_priority_number_wins_where_flows_overlap(version: int, topo: lbt.LbTopology,
                                                                          lb: lbt.LbUnderTest) -> None:
    lb.program(streams=STREAMS, flows=[
        flow("low", "stream-a", priority=1, dports=("any",)),
        flow("high", "stream-b", priority=10, protocols=("tcp",), dports=("4000-4010",)),
    ])
    assert one_tcp(topo, version, 5000) == "t1"
    assert one_tcp(topo, version, 4000) == "t2"
    assert one_udp(topo, version, 4000) == "t1"
    counters = lb.counters()
    assert counters["flow-stream-a-low"] >= 1 and counters["flow-stream-b-high"] >= 1


@VERSIONS
def test_source_subnets_and_source_port_ranges_select_the_flow(version: int, topo: lbt.LbTopology,
                                                               lb: lbt.LbUnderTest) -> None:
    half = {4: ("192.0.2.0/25",), 6: ("2001:db8:e::/120",)}[version]
    lb.program(streams=STREAMS, flows=[
        flow("any", "stream-a", priority=1, protocols=("udp",), dports=("0-65535",)),
        flow("near", "stream-c", priority=20, protocols=("udp",), dports=("7000",), sources=half),
        flow("ports", "stream-b", priority=40, protocols=("udp",), dports=("7000",), sports=("40000-40010", "41000")),
    ])
    assert one_udp(topo, version, 7000, sport=40005) == "t2"
    assert one_udp(topo, version, 7000, sport=41000) == "t2"
    assert one_udp(topo, version, 7000, sport=40011) == "t3"
    assert one_udp(topo, version, 7000, sport=40011, source=OTHER_CLIENT[version]) == "t1"
    assert one_udp(topo, version, 5000, sport=40011) == "t1"


@VERSIONS
def test_byte_match_tcp_2_2_equals_4002_lets_4002_pass_and_drops_4000(version: int, topo: lbt.LbTopology,
                                                                      lb: lbt.LbUnderTest) -> None:
    lb.program(streams=STREAMS, flows=[
        flow("bytes", "stream-c", protocols=("tcp",), dports=("4000-4010",), byte_matches=("tcp[2:2] = 4002",)),
    ])
    assert one_tcp(topo, version, 4002) == "t3"
    assert one_tcp(topo, version, 4000) is None
    masked = [flow("masked", "stream-b", protocols=("tcp",), byte_matches=("tcp[2:2] & 0xfff0 = 0x0fa0",))]
    lb.program(streams=STREAMS, flows=masked)  # 0x0fa0..0x0faf = 4000..4015
    assert one_tcp(topo, version, 4000) == "t2" and one_tcp(topo, version, 4002) == "t2"
    assert one_tcp(topo, version, 5000) is None


@VERSIONS
def test_traffic_matching_no_flow_is_dropped(version: int, topo: lbt.LbTopology, lb: lbt.LbUnderTest) -> None:
    lb.program(streams=STREAMS, flows=[flow("only-4000", "stream-a", dports=("4000",))])
    assert one_tcp(topo, version, 4000) == "t1"
    before = lb.counters()["flow-stream-a-only-4000"]
    assert one_tcp(topo, version, 5000) is None
    assert one_udp(topo, version, 7000) is None
    assert lb.counters()["flow-stream-a-only-4000"] == before
    vip_chain = lb.nft.run(f"list chain inet meridio-lb vip-{lbt.VIPS[version][0].replace(':', '.')}/"
                           f"{32 if version == 4 else 128}")
    rules = [line.strip() for line in vip_chain.splitlines() if "comment" in line]
    assert rules[-1].startswith("drop ")


@VERSIONS
def test_a_stream_without_targets_drops_its_flows_instead_of_falling_through(version: int, topo: lbt.LbTopology,
                                                                            lb: lbt.LbUnderTest) -> None:
    lb.program(streams={"stream-a": [1], "stream-b": []}, flows=[
        flow("low", "stream-a", priority=1), flow("empty", "stream-b", priority=5, dports=("4000",))])
    assert one_tcp(topo, version, 5000) == "t1"
    assert one_tcp(topo, version, 4000) is None


def _sctp_frames(topo: lbt.LbTopology, version: int, dports: list[int]) -> list[bytes]:
    client_mac, lb_mac = lbt.mac_of(topo.client, "ext0"), lbt.mac_of(topo.lb, "ext0")
    ip = (IP(src=lbt.CLIENT[4], dst=lbt.VIPS[4][0]) if version == 4
          else IPv6(src=lbt.CLIENT[6], dst=lbt.VIPS[6][0]))
    return [bytes(Ether(src=client_mac, dst=lb_mac) / ip / SCTP(sport=50000 + i, dport=port, tag=0) / SCTPChunkInit(
        init_tag=1000 + i, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1))
        for i, port in enumerate(dports)]


@VERSIONS
def test_sctp_packets_are_classified_by_port_like_tcp_and_udp(version: int, topo: lbt.LbTopology,
                                                              lb: lbt.LbUnderTest) -> None:
    lb.program(streams=STREAMS, flows=[
        flow("sctp-a", "stream-a", protocols=("sctp",), dports=("9000",)),
        flow("sctp-b", "stream-b", protocols=("sctp",), dports=("9001-9002",)),
        flow("tcp-c", "stream-c", protocols=("tcp",), dports=("9003",)),
    ])
    lbt.probe_counters(topo, {f"p{port}": f"meta l4proto sctp th dport {port}" for port in (9000, 9001, 9002, 9003)})
    lbt.send_frames(topo.client, "ext0", _sctp_frames(topo, version, [9000] * 3 + [9001] * 2 + [9002] + [9003] * 4))
    seen = lbt.read_probes(topo)
    assert seen[1] == {"p9000": 3, "p9001": 0, "p9002": 0, "p9003": 0}
    assert seen[2] == {"p9000": 0, "p9001": 2, "p9002": 1, "p9003": 0}
    assert seen[3]["p9003"] == 0


@VERSIONS
def test_a_flow_nftables_rejects_is_left_out_and_everything_else_applies(version: int, topo: lbt.LbTopology,
                                                                        lb: lbt.LbUnderTest) -> None:
    lb.program(streams=STREAMS, flows=[flow("good", "stream-a", dports=("5000",))])
    before = lb.nft.run("list table inet meridio-lb")
    good = flowsmod.flow_spec(flow("good", "stream-a", dports=("5000",)))
    other = flowsmod.flow_spec(flow("other", "stream-b", dports=("4000",)))
    # A byte match beyond the 64 KiB the kernel can load: the parser refuses it, so build it directly to
    # stand for "a flow nftables rejects" and prove the reconciler's fallback.
    bad = dataclasses.replace(flowsmod.flow_spec(flow("bad", "stream-c", dports=("7000",))),
                              byte_matches=(flowsmod.ByteMatch(flowsmod.Protocol.UDP, 70000, 2, 1),))
    from meridio.loadbalancer.reconciler import Desired, StreamInput

    desired = Desired(vips=tuple(flowsmod.parse_network(v) for v in lbt.VIPS[4] + lbt.VIPS[6]),
                      streams=tuple(StreamInput(n, 100, tuple(lb.target(i) for i in ids))
                                    for n, ids in STREAMS.items()),
                      flows=(good, other, bad))
    report = lb.reconciler.reconcile(desired)
    assert [(s, f) for s, f, _ in report.rejected_flows] == [("stream-c", "bad")]
    after = lb.nft.run("list table inet meridio-lb")
    assert "flow-stream-c-bad" not in after and "flow-stream-b-other" in after and before != after
    assert one_tcp(topo, version, 5000) == "t1"
    assert one_tcp(topo, version, 4000) == "t2"
    assert one_udp(topo, version, 7000) is None
