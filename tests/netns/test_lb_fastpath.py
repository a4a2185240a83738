"""The eBPF fast path with real packets: the same decisions as the nftables path (a hypothesis
differential), the hash identity with nft's jhash, what is left to the slow path (fragments, ICMP
errors, TTL 1), the atomic table switch under traffic, restart from the pins and removal.

Real: namespaces, the tc program (``bpf/fastpath.bpf.c``) loaded and written by
:class:`meridio.loadbalancer.fastpath.FastPath`, nftables and policy routing by the Reconciler, raw
Ethernet frames crafted with scapy and AF_PACKET captures on the targets' links (what a target's NIC
received, L3 bytes compared exactly). Each test mounts its own bpffs and removes it.
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkData

from meridio.kernel import bpf
from meridio.kernel import netns as netnsmod
from meridio.loadbalancer import fastmaps, fastpath, maglev
from meridio.loadbalancer import flows as flowsmod
from meridio.loadbalancer.flows import PortNatSpec, Protocol
from tests.netns import lb_topology as lbt

VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
PREFIX_VIPS = {4: "203.0.113.128/28", 6: "2001:db8:f::100/124"}
ALL_VIPS = lbt.VIPS[4] + lbt.VIPS[6] + (PREFIX_VIPS[4], PREFIX_VIPS[6])
MARK = b"MRDP"


@pytest.fixture
def topo(netns: Any) -> lbt.LbTopology:
    return lbt.build(netns, targets=3)


@pytest.fixture
def lb(topo: lbt.LbTopology, bpffs: Any) -> Iterator[lbt.LbUnderTest]:
    under_test = lbt.LbUnderTest(topo, pin_dir=bpffs.path)
    try:
        yield under_test
    finally:
        assert under_test.fastpath is not None
        under_test.fastpath.remove()
        under_test.close()


# --- captures on the targets' links -------------------------------------------------------------

class Captures:
    """An AF_PACKET socket on every target's eth0: the IP packets each target received, by marker id."""

    def __init__(self, topo: lbt.LbTopology) -> None:
        def open_socket() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind(("eth0", 0))
            s.setblocking(False)
            return s

        self.socks = {i: lbt.in_netns(ns, open_socket) for i, ns in topo.targets.items()}

    def drain(self) -> dict[int, list[tuple[int, bytes]]]:
        """marker id -> [(target, L3 bytes)] received since the last drain."""
        out: dict[int, list[tuple[int, bytes]]] = collections.defaultdict(list)
        for i, s in self.socks.items():
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                    continue
                at = frame.find(MARK)
                if at >= 0:
                    out[struct.unpack(">I", frame[at + 4:at + 8])[0]].append((i, frame[14:]))
        return out

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


@pytest.fixture
def captures(topo: lbt.LbTopology) -> Iterator[Captures]:
    c = Captures(topo)
    try:
        yield c
    finally:
        c.close()


def settle_and_drain(captures: Captures, seconds: float = 0.4) -> dict[int, list[tuple[int, bytes]]]:
    time.sleep(seconds)
    return captures.drain()


# --- packets ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pkt:
    version: int
    src: str
    dst: str
    proto: str
    sport: int
    dport: int
    ttl: int = 64
    flags: str = "S"
    head: bytes = b""
    """Payload bytes before the marker (byte matches look at them)."""

    def frame(self, eth: Any, ident: int) -> bytes:
        payload = self.head + MARK + struct.pack(">I", ident) + b"." * 16
        ip: Any = (IP(src=self.src, dst=self.dst, ttl=self.ttl) if self.version == 4
                   else IPv6(src=self.src, dst=self.dst, hlim=self.ttl))
        if self.proto == "tcp":
            l4: Any = TCP(sport=self.sport, dport=self.dport, flags=self.flags, seq=ident) / payload
        elif self.proto == "udp":
            l4 = UDP(sport=self.sport, dport=self.dport) / payload
        else:
            l4 = SCTP(sport=self.sport, dport=self.dport, tag=ident) / SCTPChunkData(data=payload)
        return bytes(eth / ip / l4)


def ether(topo: lbt.LbTopology) -> Any:
    return Ether(src=lbt.mac_of(topo.client, "ext0"), dst=lbt.mac_of(topo.lb, "ext0"))


def send(topo: lbt.LbTopology, pkts: list[Pkt], base: int = 0) -> None:
    eth = ether(topo)
    lbt.send_frames(topo.client, "ext0", [p.frame(eth, base + i) for i, p in enumerate(pkts)])


def fast_packets(lb: lbt.LbUnderTest) -> int:
    """Packets the fast path forwarded for the flows programmed now (its flow counters)."""
    assert lb.fastpath is not None
    return sum(c.packets for name, c in lb.fastpath.counters().items() if name.startswith("flow-"))


def nat(port: int, target: int, proto: str, vips: tuple[str, ...]) -> PortNatSpec:
    return PortNatSpec(port, target, Protocol(proto), tuple(flowsmod.parse_network(v if "/" in v else
                                                            f"{v}/{128 if ':' in v else 32}") for v in vips))


# --- the differential test ----------------------------------------------------------------------

SOURCES = {4: ("192.0.2.1", "192.0.2.200", "198.51.100.7"), 6: ("2001:db8:e::1", "2001:db8:e:1::5", "2001:db8:99::7")}
SUBNETS = ("192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "2001:db8:e::/64", "2001:db8:e:1::/64")
DPORTS = (80, 443, 5000, 5005, 7000, 8080, 9999)
PORT_RANGES = ("80", "443", "5000-5010", "7000", "8000-9999", "any")
BYTE_MATCHES = ("tcp[13:1] & 0x02 = 0x02", "tcp[13:1] & 0x12 = 0x02", "udp[8:1] = 0x41", "udp[8:2] = 0x4142",
                "tcp[20:1] = 0x41", "sctp[12:1] = 0", "tcp[20:4] & 0xffff0000 = 0x41420000")
STREAM_TARGETS = {"stream-a": [1, 2, 3], "stream-b": [2, 3], "stream-c": []}


def vip_addresses(version: int) -> tuple[str, ...]:
    prefix = ipaddress.ip_network(PREFIX_VIPS[version])
    return lbt.VIPS[version] + (str(prefix[1]), str(prefix[14]))


@st.composite
def flow_models(draw: Any, index: int) -> Any:
    return lbt.model_flow(
        f"f{index}", draw(st.sampled_from(sorted(STREAM_TARGETS))), priority=draw(st.integers(1, 4)),
        protocols=tuple(draw(st.lists(st.sampled_from(("tcp", "udp", "sctp")), min_size=1, max_size=3, unique=True))),
        sources=tuple(draw(st.lists(st.sampled_from(SUBNETS), max_size=2, unique=True))),
        sports=tuple(draw(st.lists(st.sampled_from(("any", "1024-40000", "40001-65535")), max_size=1))),
        dports=tuple(draw(st.lists(st.sampled_from(PORT_RANGES), max_size=2, unique=True))),
        vips=tuple(draw(st.lists(st.sampled_from(ALL_VIPS), min_size=1, max_size=3, unique=True))),
        byte_matches=tuple(draw(st.lists(st.sampled_from(BYTE_MATCHES), max_size=1))))


@st.composite
def cases(draw: Any) -> tuple[list[Any], list[PortNatSpec], list[Pkt]]:
    flows = [draw(flow_models(i)) for i in range(draw(st.integers(1, 4)))]
    nats = [nat(p, t, proto, tuple(draw(st.lists(st.sampled_from(ALL_VIPS), min_size=1, max_size=2, unique=True))))
            for p, t, proto in draw(st.lists(st.sampled_from([(80, 8080, "tcp"), (80, 8080, "udp"), (443, 4443, "tcp"),
                                                              (7000, 7001, "sctp")]), max_size=2, unique=True))]
    pkts = []
    for _ in range(24):
        version = draw(st.sampled_from((4, 6)))
        proto = draw(st.sampled_from(("tcp", "udp", "sctp")))
        pkts.append(Pkt(version, draw(st.sampled_from(SOURCES[version])), draw(st.sampled_from(vip_addresses(version))),
                        proto, draw(st.integers(1024, 65535)), draw(st.sampled_from(DPORTS)),
                        ttl=draw(st.sampled_from((2, 64))), flags=draw(st.sampled_from(("S", "SA", "A"))),
                        head=draw(st.sampled_from((b"", b"A", b"AB", b"xy")))))
    return flows, nats, pkts


def test_the_fast_path_decides_every_packet_as_the_nft_only_path_does(topo: lbt.LbTopology, lb: lbt.LbUnderTest,
                                                                     captures: Captures) -> None:
    """Random rulesets and packets, each sent once with the program attached and once without (the same
    ruleset then runs nftables only): the same target (or none) and the same L3 bytes for every packet."""
    seen = collections.Counter()
    base = [0]

    @settings(max_examples=14, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(cases())
    def check(case: tuple[list[Any], list[PortNatSpec], list[Pkt]]) -> None:
        flows, nats, pkts = case
        lb.program(flows=flows, streams=STREAM_TARGETS, nats=nats, vips=ALL_VIPS)
        captures.drain()
        before = fast_packets(lb)
        send(topo, pkts, base[0])
        fast = settle_and_drain(captures)
        seen["fast"] += fast_packets(lb) - before
        assert lb.fastpath is not None
        lb.fastpath.detach()
        send(topo, pkts, base[0])
        slow = settle_and_drain(captures)
        for i, pkt in enumerate(pkts):
            got_fast, got_slow = sorted(fast.get(base[0] + i, [])), sorted(slow.get(base[0] + i, []))
            assert got_fast == got_slow, f"packet {pkt} (flows {flows}, nats {nats})"
            seen["delivered" if got_slow else "dropped"] += 1
        base[0] += len(pkts)

    check()
    assert seen["fast"] > 0 and seen["delivered"] > 0 and seen["dropped"] > 0, seen


# --- hash identity ------------------------------------------------------------------------------

@VERSIONS
def test_python_jhash_and_maglev_predict_the_target_nft_and_the_fast_path_pick(
        version: int, topo: lbt.LbTopology, lb: lbt.LbUnderTest, captures: Captures) -> None:
    """nft's jhash is the kernel's byte jhash over its register layout; the program computes the same."""
    lb.program(flows=[lbt.model_flow("all", protocols=("tcp", "udp"))], streams={"stream-a": [1, 2, 3]})
    stream = lb.reconciler.offsets.offset_of("stream-a")
    assert stream is not None
    m, seed = maglev.table_size(100), maglev.stream_seed("stream-a")
    table = maglev.populate([1, 2, 3], m, 100)
    pkts = [Pkt(version, lbt.CLIENT[version], lbt.VIPS[version][0], "udp", 20000 + 7 * i, 5000 + i % 3) for i in range(60)]
    want = {i: table[fastmaps.bucket(p.src, p.dst, p.sport, p.dport, m=m, seed=seed)] for i, p in enumerate(pkts)}
    assert len(set(want.values())) == 3
    for attached in (True, False):
        if not attached:
            assert lb.fastpath is not None
            lb.fastpath.detach()
        before = fast_packets(lb)
        send(topo, pkts)
        got = settle_and_drain(captures)
        assert {i: [t for t, _ in got[i]] for i in range(len(pkts))} == {i: [want[i]] for i in range(len(pkts))}
        assert (fast_packets(lb) - before == len(pkts)) if attached else (fast_packets(lb) == before)


# --- what the slow path keeps --------------------------------------------------------------------

@VERSIONS
def test_a_fragmented_datagram_and_an_icmp_error_reach_the_flow_s_fast_path_target(
        version: int, topo: lbt.LbTopology, lb: lbt.LbUnderTest, captures: Captures) -> None:
    from scapy.layers.inet import fragment
    from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6

    lb.program(flows=[lbt.model_flow("udp", protocols=("udp",))], streams={"stream-a": [1, 2, 3]})
    eth, vip, client = ether(topo), lbt.VIPS[version][0], lbt.CLIENT[version]
    owners: dict[int, int] = {}
    for n, sport in enumerate(range(36000, 36012)):
        before = fast_packets(lb)
        small = Pkt(version, client, vip, "udp", sport, 7000)
        lbt.send_frames(topo.client, "ext0", [small.frame(eth, 1000 + n)])
        got = settle_and_drain(captures, 0.15)[1000 + n]
        assert len(got) == 1 and fast_packets(lb) == before + 1, f"small datagram from port {sport} took the fast path"
        owners[sport] = got[0][0]
        payload = MARK + struct.pack(">I", 2000 + n) + b"F" * 2900
        if version == 4:
            frames = fragment(IP(src=client, dst=vip, id=n + 1) / UDP(sport=sport, dport=7000) / payload, fragsize=1000)
            quoted: Any = IP(src=vip, dst=client) / UDP(sport=7000, dport=sport) / (MARK + struct.pack(">I", 3000 + n))
            icmp: Any = IP(src=client, dst=vip) / ICMP(type=3, code=4, nexthopmtu=1400) / quoted
        else:
            frames = fragment6(IPv6(src=client, dst=vip) / IPv6ExtHdrFragment(id=n + 1) / UDP(sport=sport, dport=7000)
                               / payload, 1000)
            quoted = IPv6(src=vip, dst=client) / UDP(sport=7000, dport=sport) / (MARK + struct.pack(">I", 3000 + n))
            icmp = IPv6(src=client, dst=vip) / ICMPv6PacketTooBig(mtu=1300) / quoted
        lbt.send_frames(topo.client, "ext0", [bytes(eth / f) for f in frames] + [bytes(eth / icmp)])
        got = settle_and_drain(captures, 0.2)
        assert {t for t, _ in got[3000 + n]} == {owners[sport]}, f"ICMP error for client port {sport}"
        # the target gets the reassembled datagram's first fragment (the marker) again re-fragmented
        assert {t for t, _ in got[2000 + n]} == {owners[sport]}, f"fragments from client port {sport}"
    assert len(set(owners.values())) > 1


@VERSIONS
def test_ttl_1_is_left_to_the_stack_which_answers_time_exceeded(version: int, topo: lbt.LbTopology,
                                                                lb: lbt.LbUnderTest, captures: Captures) -> None:
    lb.program(flows=[lbt.model_flow("udp", protocols=("udp",))], streams={"stream-a": [1, 2, 3]})

    def listen() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind(("ext0", 0))
        s.settimeout(2)
        return s

    sniffer = lbt.in_netns(topo.client, listen)
    try:
        before = fast_packets(lb)
        send(topo, [Pkt(version, lbt.CLIENT[version], lbt.VIPS[version][0], "udp", 37000, 7000, ttl=1)])
        deadline, answer = time.monotonic() + 2, None
        while time.monotonic() < deadline and answer is None:
            frame = Ether(sniffer.recv(65535))
            if version == 4 and frame.haslayer(ICMP) and frame[ICMP].type == 11:
                answer = frame
            if version == 6 and frame.haslayer(ICMPv6TimeExceeded):
                answer = frame
        assert answer is not None, "no time-exceeded from the LB"
        assert answer[IP if version == 4 else IPv6].src == lbt.LB_EXT[version]
        assert fast_packets(lb) == before
        assert not settle_and_drain(captures, 0.2)
    finally:
        sniffer.close()


# --- table switch under traffic, restart, removal -----------------------------------------------

def _blast(topo: lbt.LbTopology, version: int, stop: threading.Event, sent: list[int]) -> None:
    """UDP from 200 source ports, round after round, until ``stop``; counts what it sent."""
    eth = ether(topo)
    frames = [Pkt(version, lbt.CLIENT[version], lbt.VIPS[version][0], "udp", 30000 + i, 7000) for i in range(200)]
    raw = [f.frame(eth, i) for i, f in enumerate(frames)]

    def run() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind(("ext0", 0))
            while not stop.is_set():
                for r in raw:
                    s.send(r)
                sent[0] += len(raw)
                time.sleep(0.002)

    lbt.in_netns(topo.client, run)


def _target_counts(topo: lbt.LbTopology) -> dict[int, int]:
    return {i: c.get("vip", 0) for i, c in lbt.read_probes(topo).items()}


@VERSIONS
def test_a_table_switch_under_traffic_loses_nothing_and_sends_nothing_to_the_removed_target(
        version: int, topo: lbt.LbTopology, lb: lbt.LbUnderTest) -> None:
    vip = lbt.VIPS[version][0]
    ip = "ip" if version == 4 else "ip6"
    lbt.probe_counters(topo, {"vip": f"{ip} daddr {vip} udp dport 7000"})
    flows = [lbt.model_flow("udp", protocols=("udp",))]
    lb.program(flows=flows, streams={"stream-a": [1, 2, 3]})
    stop, sent = threading.Event(), [0]
    blaster = threading.Thread(target=_blast, args=(topo, version, stop, sent))
    blaster.start()
    try:
        time.sleep(0.5)
        switches = []
        for ids in ([1, 2], [1, 2, 3], [1, 3], [2, 3], [1, 2]):
            report = lb.program(flows=flows, streams={"stream-a": ids})
            assert report.fastpath is not None
            switches.append(report.fastpath.buckets_written)
            time.sleep(0.3)
        at_last_switch = _target_counts(topo)[3]
        time.sleep(0.5)
    finally:
        stop.set()
        blaster.join()
    time.sleep(0.3)
    counts = _target_counts(topo)
    assert counts[3] == at_last_switch, "target 3 got packets after it left the table"
    assert sum(counts.values()) == sent[0], f"delivered {counts} of {sent[0]}"
    # only buckets that differ from the spare half are written: back to [1, 2, 3] (the spare) writes none
    assert switches[1] == 0 and all(0 < n < maglev.table_size(100) for n in switches[2:]), switches
    assert fast_packets(lb) == sent[0]


def test_a_restarted_loader_reopens_the_pins_and_rewrites_only_the_difference(
        topo: lbt.LbTopology, bpffs: Any, captures: Captures) -> None:
    flows = [lbt.model_flow("udp", protocols=("udp",))]
    first = lbt.LbUnderTest(topo, pin_dir=bpffs.path)
    second = None
    try:
        r1 = first.program(flows=flows, streams={"stream-a": [1, 2, 3]})
        assert r1.fastpath is not None and r1.fastpath.buckets_written == 2 * maglev.table_size(100)
        pkts = [Pkt(4, lbt.CLIENT[4], lbt.VIPS[4][0], "udp", 40000 + i, 7000) for i in range(30)]
        send(topo, pkts)
        before = settle_and_drain(captures)
        counted = first.counters()["flow-stream-a-udp"]
        first.close()  # like a daemon that died: pins and attachment stay, forwarding goes on
        send(topo, pkts, 100)
        during = settle_and_drain(captures)
        assert [during[100 + i][0][0] for i in range(30)] == [before[i][0][0] for i in range(30)]
        second = lbt.LbUnderTest(topo, pin_dir=bpffs.path)
        assert second.fastpath is not None and second.fastpath.reopened
        r2 = second.program(flows=flows, streams={"stream-a": [1, 2, 3]})
        assert r2.fastpath is not None and (r2.fastpath.buckets_written, r2.fastpath.entries_written) == (0, 0)
        assert second.counters()["flow-stream-a-udp"] == counted + 30
        r3 = second.program(flows=flows, streams={"stream-a": [1, 2]})
        assert r3.fastpath is not None and 0 < r3.fastpath.buckets_written < maglev.table_size(100)
    finally:
        if second is not None:
            assert second.fastpath is not None
            second.fastpath.remove()
            second.close()
        else:
            first.close()


def pins(path: Any) -> list[str]:
    """The pins on a bpffs (not the kernel's own ``maps.debug``/``progs.debug`` iterators)."""
    return sorted(p.name for p in path.iterdir() if not p.name.endswith(".debug"))


def test_remove_takes_off_every_attachment_and_pin(topo: lbt.LbTopology, bpffs: Any) -> None:
    lb = lbt.LbUnderTest(topo, pin_dir=bpffs.path)
    try:
        lb.program(flows=[lbt.model_flow("udp", protocols=("udp",))], streams={"stream-a": [1]})
        assert lb.fastpath is not None
        assert bpf.tc_attached("ext0", netns=topo.lb) == [lb.fastpath.loaded.program.id]
        assert pins(bpffs.path) == sorted(("prog", *fastpath.MAPS))
        lb.fastpath.remove()
        assert bpf.tc_attached("ext0", netns=topo.lb) == []
        assert "clsact" not in netnsmod.run(topo.lb, ["tc", "qdisc", "show", "dev", "ext0"]).stdout
        assert pins(bpffs.path) == []
    finally:
        lb.close()
