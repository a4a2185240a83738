"""Fragments, ICMP, stateless port NAT and counters with real packets, IPv4 and IPv6.

Real: namespaces, nftables and policy routing programmed by the Reconciler, UDP/TCP sockets (the
client's kernel fragments large datagrams), ICMP errors crafted with scapy, ``ping``, ``conntrack``,
nft counters in the LB and in the targets. Nothing is faked.
"""
from __future__ import annotations

import collections
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether

from meridio.kernel import netns as netnsmod
from meridio.loadbalancer import flows as flowsmod
from tests.netns import lb_topology as lbt

flow = lbt.model_flow
VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])


@pytest.fixture
def topo(netns: Any, procs: Any) -> lbt.LbTopology:
    topology = lbt.build(netns, targets=3)
    lbt.start_responders(procs, topology, [4000, 7000])
    return topology


@pytest.fixture
def lb(topo: lbt.LbTopology) -> Iterator[lbt.LbUnderTest]:
    under_test = lbt.LbUnderTest(topo)
    under_test.program(streams={"stream-a": [1, 2, 3]}, flows=[flow("all", dports=("7000", "80", "4000"))])
    yield under_test
    under_test.close()


def conntrack_entries(ns: str) -> int:
    out = netnsmod.run(ns, ["conntrack", "-L"], check=False)
    return len([line for line in out.stdout.splitlines() if line.strip()])


@VERSIONS
def test_large_udp_datagrams_that_fragment_reach_the_same_target_as_small_ones(version: int, topo: lbt.LbTopology,
                                                                               lb: lbt.LbUnderTest) -> None:
    replies = lbt.udp_names(topo.client, lbt.VIPS[version][0], 7000, range(32000, 32030), sizes=(20, 3000, 20))
    for small, large, small_again in replies:
        assert small and large and small_again
        assert large.split() == [small.split()[0], "3000"]  # whole datagram, on the same target
        assert small_again.split()[0] == small.split()[0]
    assert len({r[0].split()[0] for r in replies if r[0]}) > 1
    assert conntrack_entries(topo.lb) == 0


@VERSIONS
def test_fragments_from_targets_are_not_reassembled_and_nothing_is_tracked(version: int, topo: lbt.LbTopology,
                                                                           lb: lbt.LbUnderTest) -> None:
    frag = "ip frag-off & 0x3fff != 0" if version == 4 else "exthdr frag exists"
    netnsmod.run(topo.lb, ["nft", "-f", "-"], input="\n".join([
        "add table inet probe",
        "add chain inet probe pre { type filter hook prerouting priority -350; policy accept; }",
        "add counter inet probe from-client", "add counter inet probe from-targets",
        f'add rule inet probe pre iifname "ext0" {frag} counter name "from-client"',
        f'add rule inet probe pre iifname "{topo.bridge}" {frag} counter name "from-targets"']) + "\n")
    replies = lbt.udp_names(topo.client, lbt.VIPS[version][0], 7000, range(33000, 33010), sizes=(2000,))
    big = lbt.in_netns(topo.client, _ask_big, lbt.VIPS[version][0])
    assert all(r[0] and r[0].endswith(" 2000") for r in replies)
    assert big is not None and len(big) == 3000
    listing = json.loads(netnsmod.run(topo.lb, ["nft", "-j", "list", "counters", "table", "inet", "probe"]).stdout)
    seen = {o["counter"]["name"]: o["counter"]["packets"] for o in listing["nftables"] if "counter" in o}
    assert seen["from-client"] == 0  # reassembled at -400, before this -350 probe
    assert seen["from-targets"] >= 3  # 3000 bytes of reply -> several fragments, passed through as they came
    assert conntrack_entries(topo.lb) == 0


def _ask_big(vip: str) -> bytes | None:
    with socket.socket(socket.AF_INET6 if ":" in vip else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"BIG please", (vip, 7000))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def _icmp_error(topo: lbt.LbTopology, version: int, client_port: int, vport: int) -> bytes:
    """What a router would send when the target's reply VIP:vport -> client:client_port is too big."""
    eth = Ether(src=lbt.mac_of(topo.client, "ext0"), dst=lbt.mac_of(topo.lb, "ext0"))
    vip, client = lbt.VIPS[version][0], lbt.CLIENT[version]
    if version == 4:
        quoted = IP(src=vip, dst=client) / UDP(sport=vport, dport=client_port) / (b"r" * 32)
        return bytes(eth / IP(src=client, dst=vip) / ICMP(type=3, code=4, nexthopmtu=1400) / quoted)
    quoted6 = IPv6(src=vip, dst=client) / UDP(sport=vport, dport=client_port) / (b"r" * 32)
    return bytes(eth / IPv6(src=client, dst=vip) / ICMPv6PacketTooBig(mtu=1300) / quoted6)


@VERSIONS
def test_an_icmp_packet_too_big_reaches_the_target_that_owns_the_flow(version: int, topo: lbt.LbTopology,
                                                                      lb: lbt.LbUnderTest) -> None:
    sports = list(range(34000, 34030))
    owners = {sp: r[0].split()[0] for sp, r in zip(sports, lbt.udp_names(topo.client, lbt.VIPS[version][0], 7000,
                                                                         sports)) if r[0]}
    assert len(owners) == len(sports) and len(set(owners.values())) > 1
    icmp = "icmp type destination-unreachable" if version == 4 else "icmpv6 type packet-too-big"
    inner_dport = "@th,240,16" if version == 4 else "@th,400,16"
    lbt.probe_counters(topo, {f"c{sp}": f"{icmp} {inner_dport} {sp}" for sp in sports})
    lbt.send_frames(topo.client, "ext0", [_icmp_error(topo, version, sp, 7000) for sp in sports])
    seen = lbt.read_probes(topo)
    for sp in sports:
        got = [i for i in seen if seen[i][f"c{sp}"]]
        assert [f"t{i}" for i in got] == [owners[sp]], f"ICMP error for client port {sp}"


@VERSIONS
def test_echo_requests_to_a_vip_are_answered_by_one_target(version: int, topo: lbt.LbTopology,
                                                           lb: lbt.LbUnderTest) -> None:
    lbt.probe_counters(topo, {"echo": "icmp type echo-request" if version == 4 else "icmpv6 type echo-request"})
    out = netnsmod.run(topo.client, ["ping", f"-{version}", "-c", "3", "-i", "0.2", "-W", "1", lbt.VIPS[version][0]],
                       check=False)
    assert " 0% packet loss" in out.stdout
    assert sorted(c["echo"] for c in lbt.read_probes(topo).values()) == [0, 0, 3]


@VERSIONS
def test_destination_port_nat_80_to_4000_is_stateless_both_ways(version: int, topo: lbt.LbTopology,
                                                                lb: lbt.LbUnderTest) -> None:
    nats = [flowsmod.PortNatSpec(80, 4000, flowsmod.Protocol(p), tuple(flowsmod.parse_network(v) for v in (
        f"{lbt.VIPS[4][0]}/32", f"{lbt.VIPS[6][0]}/128"))) for p in ("tcp", "udp")]
    lb.program(streams={"stream-a": [1, 2, 3]}, flows=[flow("web", dports=("80",))], nats=nats)
    tcp = lbt.tcp_names(topo.client, lbt.VIPS[version][0], 80, range(35000, 35040))
    assert None not in tcp and len(set(tcp)) > 1
    peers = lbt.in_netns(topo.client, _udp_peers, lbt.VIPS[version][0], 80, 20)
    assert all(port == 80 and name for name, port in peers)
    assert lbt.tcp_names(topo.client, lbt.VIPS[version][0], 4000, [None], timeout=0.7) == [None]  # flow is on 80
    assert conntrack_entries(topo.lb) == 0


def _udp_peers(vip: str, port: int, count: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(count):
        with socket.socket(socket.AF_INET6 if ":" in vip else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"x", (vip, port))
            data, peer = s.recvfrom(256)
            out.append((data.decode().split()[0], peer[1]))
    return out


def test_icmpv4_errors_for_a_natted_flow_reach_the_socket_on_the_target_port(topo: lbt.LbTopology,
                                                                             lb: lbt.LbUnderTest) -> None:
    # IPv4 only: ICMPv6 has no unused word to compensate the checksum, so the quoted port stays 80 there.
    nats = [flowsmod.PortNatSpec(80, 4000, flowsmod.Protocol.UDP, (flowsmod.parse_network(f"{lbt.VIPS[4][0]}/32"),))]
    lb.program(streams={"stream-a": [1, 2, 3]}, flows=[flow("web", dports=("80",))], nats=nats)
    owner = lbt.udp_names(topo.client, lbt.VIPS[4][0], 80, [36000])[0][0]
    assert owner
    lbt.send_frames(topo.client, "ext0", [_icmp_error(topo, 4, 36000, 80)])
    ns = topo.targets[int(owner.split()[0][1:])]
    route = netnsmod.run(ns, ["ip", "route", "get", lbt.CLIENT[4], "from", lbt.VIPS[4][0]]).stdout
    assert "mtu 1400" in route  # the target's UDP socket on 4000 accepted the error: PMTU learned


@VERSIONS
def test_flow_and_target_counters_count_what_was_forwarded(version: int, topo: lbt.LbTopology,
                                                           lb: lbt.LbUnderTest) -> None:
    before = lb.counters()
    replies = lbt.udp_names(topo.client, lbt.VIPS[version][0], 7000, range(37000, 37060))
    per_target = collections.Counter(r[0].split()[0] for r in replies if r[0])
    after = lb.counters()
    assert after["flow-stream-a-all"] - before["flow-stream-a-all"] == 60
    hits = {i: after[f"tgt-{5000 + i}"] - before[f"tgt-{5000 + i}"] for i in (1, 2, 3)}
    assert hits == {i: per_target[f"t{i}"] for i in (1, 2, 3)}


@VERSIONS
def test_a_datagram_too_big_for_the_target_link_teaches_the_client_the_path_mtu(version: int, topo: lbt.LbTopology,
                                                                                lb: lbt.LbUnderTest) -> None:
    from meridio.kernel import netlink
    from meridio.loadbalancer import app

    for name, value in app.SYSCTLS.items():  # the daemon's sysctls: the LB's own errors must reach the client
        netlink.set_sysctl(name, value, netns=topo.lb)
    with lbt.Netlink(topo.lb) as nl:
        nl.set_link(topo.bridge, mtu=1280)
    vip = lbt.VIPS[version][0]

    def send_with_df() -> None:
        with socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM) as s:
            if version == 4:
                s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
            else:
                s.setsockopt(socket.IPPROTO_IPV6, 62, 1)  # IPV6_DONTFRAG
            s.sendto(b"x" * 1400, (vip, 7000))

    lbt.in_netns(topo.client, send_with_df)
    route = netnsmod.run(topo.client, ["ip", f"-{version}", "route", "get", vip]).stdout
    assert "mtu 1280" in route
