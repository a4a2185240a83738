"""Render the load balancer's desired state into the objects of ``table inet meridio-lb``.

Packet walk (DESIGN.md §3), all in one table, no conntrack:

* prerouting -500 ``defrag-skip``: traffic from the target-side interfaces gets ``notrack`` so the
  kernel's defragmentation (-400) leaves it alone; ``defrag-enable`` (a chain nothing jumps to, holding
  ``tproxy`` statements) makes the kernel register its defrag hooks without any conntrack hook, so
  ingress from outside is reassembled and a fragmented datagram hashes like its flow's other packets.
* prerouting -300 ``notrack-prerouting`` (and ``notrack-output``): nothing is ever tracked, even if
  something else in the namespace loads conntrack.
* prerouting -150 ``classify``: ``ip daddr vmap @dispatch4`` -> one chain per VIP (piece): the flows of
  that VIP by priority, higher number first (L4 rules first, then ICMP error rules, then echo rules);
  each matching rule counts into the flow's named counter and ``goto``\\ s its stream's hash chain; the
  VIP chain ends with ``drop``.
* stream chains: ``meta mark set jhash <5-tuple> mod M seed S map @<stream map>``, count into the
  target's named counter (chosen by mark) and ``accept``; then ``drop`` (a stream without targets has an
  empty map: the lookup misses and the packet is dropped). ICMP errors hash the reversed inner header
  (same bucket as the flow), echo requests hash the address pair.
* prerouting 100 ``port-nat``: stateless destination port NAT (``tcp/udp/sctp dport set``, which fix the
  checksum) and the reverse source-port rewrite for replies from targets.

Pure: :func:`render` takes parsed values (:mod:`flows`) and returns a :class:`~nftobjects.Ruleset`.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable, Sequence

from meridio.loadbalancer import maglev
from meridio.loadbalancer.flows import FlowSpec, Network, PortNatSpec, PortRange, Protocol, TargetSpec
from meridio.loadbalancer.nftobjects import (
    BucketMapObj,
    ChainObj,
    Hook,
    MapObj,
    Ruleset,
    SetObj,
    canonical_interval,
    safe_name,
)

__all__ = ["StreamState", "LbConfig", "render", "pieces", "flow_counter", "target_counter", "stream_map_name",
           "covers", "flow_order", "flow_protocols", "maglev_table"]

PRIO_DEFRAG_SKIP = -500
PRIO_RAW = -300
PRIO_MANGLE = -150
PRIO_NAT = 100

_ICMP4_ERRORS = "{ destination-unreachable, time-exceeded, parameter-problem }"
_ICMP6_ERRORS = "{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }"


@dataclasses.dataclass(frozen=True)
class StreamState:
    """One stream as the data path needs it: identity, identifier offset and its *active* targets."""

    name: str
    max_targets: int
    offset: int
    targets: tuple[TargetSpec, ...] = ()

    @property
    def m(self) -> int:
        return maglev.table_size(self.max_targets)

    @property
    def seed(self) -> int:
        return maglev.stream_seed(self.name)

    def fwmark(self, identifier: int) -> int:
        return self.offset + identifier


@dataclasses.dataclass(frozen=True)
class LbConfig:
    vips: tuple[Network, ...] = ()
    streams: tuple[StreamState, ...] = ()
    flows: tuple[FlowSpec, ...] = ()
    port_nats: tuple[PortNatSpec, ...] = ()
    target_interface_prefix: str = ""
    """Name prefix of the target-side links: their ingress is neither defragmented nor tracked."""


def flow_counter(stream: str, flow: str) -> str:
    return safe_name("flow", stream, flow)


def target_counter(fwmark: int) -> str:
    return f"tgt-{fwmark}"


def stream_map_name(stream: str) -> str:
    return safe_name("s", stream)


def _stream_chain(stream: str, kind: str, version: int) -> str:
    """``h``: 5-tuple hash, ``i``: ICMP error inner header, ``a``: address pair (echo)."""
    return f"{stream_map_name(stream)}-{kind}{version}"


@functools.lru_cache(maxsize=128)
def maglev_table(identifiers: tuple[int, ...], m: int, max_targets: int) -> tuple[int, ...]:
    return maglev.populate(identifiers, m, max_targets)


def _bucket_map(stream: StreamState) -> BucketMapObj:
    ids = tuple(sorted(t.identifier for t in stream.targets))
    table = maglev_table(ids, stream.m, stream.max_targets)
    marks = tuple(stream.offset + i for i in table)
    return BucketMapObj(stream_map_name(stream.name), stream.m, stream.seed, stream.offset, stream.max_targets,
                        marks)


# --- VIP pieces --------------------------------------------------------------------------------

Piece = tuple[int, int, int]
"""(version, first, last) as integers: a run of addresses every flow either fully covers or not."""


def pieces(vips: Iterable[Network], flow_vips: Iterable[Network]) -> list[Piece]:
    """Split the trench VIPs at every flow VIP boundary so that dispatch keys never partly overlap a flow."""
    result: list[Piece] = []
    vips = list(vips)
    flow_vips = list(flow_vips)
    for version in (4, 6):
        mine = [n for n in vips if n.version == version]
        if not mine:
            continue
        cuts = sorted({int(n.network_address) for n in mine + [f for f in flow_vips if f.version == version]}
                      | {int(n.broadcast_address) + 1 for n in mine + [f for f in flow_vips if f.version == version]})
        for first, nxt in zip(cuts, cuts[1:]):
            if any(int(n.network_address) <= first <= int(n.broadcast_address) for n in mine):
                result.append((version, first, nxt - 1))
    return result


def _addr(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _piece_key(piece: Piece) -> str:
    version, first, last = piece
    return canonical_interval(_addr(version, first), _addr(version, last))


def _piece_chain(piece: Piece) -> str:
    return "vip-" + _piece_key(piece).replace(":", ".")


def covers(flow: FlowSpec, piece: Piece) -> bool:
    version, first, last = piece
    return any(n.version == version and int(n.network_address) <= first and last <= int(n.broadcast_address)
               for n in flow.vips)


# --- rule text ---------------------------------------------------------------------------------

def _anon(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ranges: Sequence[PortRange]) -> str:
    return _anon([r.nft() for r in ranges])


def _hex_ranges(nets: Sequence[Network]) -> str:
    width = 8 if nets[0].version == 4 else 32
    items = []
    for n in nets:
        lo, hi = int(n.network_address), int(n.broadcast_address)
        items.append(f"0x{lo:0{width}x}" if lo == hi else f"0x{lo:0{width}x}-0x{hi:0{width}x}")
    return _anon(items)


def flow_protocols(flow: FlowSpec) -> tuple[Protocol, ...]:
    """The protocols a flow can match: byte matches name a protocol and imply it (as in pcap syntax)."""
    named = {bm.protocol for bm in flow.byte_matches}
    if len(named) > 1:
        return ()
    return tuple(p for p in flow.protocols if not named or p in named)


def _flow_rules(flow: FlowSpec, version: int) -> tuple[str, str, str] | None:
    """The flow's (L4, ICMP error, echo request) rules for one IP family; None if it cannot match."""
    sources = flow.sources_of(version)
    protocols = flow_protocols(flow)
    if sources is None or not protocols:
        return None
    ip = "ip" if version == 4 else "ip6"
    count = f'counter name "{flow_counter(flow.stream, flow.name)}"'
    l4 = [f"meta l4proto {_anon([p.value for p in protocols])}"]
    if sources:
        l4.append(f"{ip} saddr {_anon([str(n) for n in sources])}")
    if flow.source_ports:
        l4.append(f"th sport {_ports(flow.source_ports)}")
    if flow.destination_ports:
        l4.append(f"th dport {_ports(flow.destination_ports)}")
    l4 += [bm.nft() for bm in flow.byte_matches]
    echo = ["icmp type echo-request" if version == 4 else "icmpv6 type echo-request"]
    if sources:
        echo.append(f"{ip} saddr {_anon([str(n) for n in sources])}")
    return (" ".join(l4 + [count, f"goto {_stream_chain(flow.stream, 'h', version)}"]),
            " ".join(_icmp_error_match(flow, protocols, sources, version)
                     + [count, f"goto {_stream_chain(flow.stream, 'i', version)}"]),
            " ".join(echo + [count, f"goto {_stream_chain(flow.stream, 'a', version)}"]))


def _vip_chain_rules(flows: Sequence[FlowSpec], version: int) -> tuple[str, ...]:
    """All L4 rules by priority, then all ICMP error rules, then all echo rules, then ``drop``.

    The three kinds never match the same packet, so grouping them keeps the priority order within each
    kind while a TCP/UDP/SCTP packet only walks one rule per higher-priority flow (not three).
    """
    per_flow = [r for r in (_flow_rules(f, version) for f in flows) if r is not None]
    return tuple(rule for kind in range(3) for rule in (r[kind] for r in per_flow)) + ("drop",)


def _icmp_error_match(flow: FlowSpec, protocols: Sequence[Protocol], sources: Sequence[Network],
                      version: int) -> list[str]:
    """An ICMP error quoting a packet the target sent (VIP:vport -> client:cport), matched as its flow.

    Inner fields are read at fixed offsets (inner IPv4 without options, inner IPv6 without extension
    headers): daddr = the client (flow source), sport = the VIP port (flow destination port), dport = the
    client port (flow source port). Byte matches are not applied to the quoted header.
    """
    protos = _anon([str(p.number) for p in protocols])
    if version == 4:
        parts = [f"icmp type {_ICMP4_ERRORS}", "@th,64,8 0x45", f"@th,136,8 {protos}"]
        daddr, sport, dport = "@th,192,32", "@th,224,16", "@th,240,16"
    else:
        parts = [f"icmpv6 type {_ICMP6_ERRORS}", f"@th,112,8 {protos}"]
        daddr, sport, dport = "@th,256,128", "@th,384,16", "@th,400,16"
    if sources:
        parts.append(f"{daddr} {_hex_ranges(sources)}")
    if flow.source_ports:
        parts.append(f"{dport} {_ports(flow.source_ports)}")
    if flow.destination_ports:
        parts.append(f"{sport} {_ports(flow.destination_ports)}")
    return parts


def _stream_chains(stream: StreamState, bucket: BucketMapObj, counters: MapObj) -> list[ChainObj]:
    # Counting here (not in a forward-hook chain) saves a base chain per packet; a mark without a
    # counter element cannot happen: both come from the same active targets in the same batch.
    tail = (f"mod {stream.m} seed {stream.seed:#010x} map @{bucket.name} "
            f"counter name meta mark map @{counters.name} accept")
    hashes = {
        ("h", 4): "jhash ip saddr . ip daddr . th sport . th dport",
        ("i", 4): "jhash @th,192,32 . @th,160,32 . @th,240,16 . @th,224,16",
        ("a", 4): "jhash ip saddr . ip daddr",
        ("h", 6): "jhash ip6 saddr . ip6 daddr . th sport . th dport",
        ("i", 6): "jhash @th,256,128 . @th,128,128 . @th,400,16 . @th,384,16",
        ("a", 6): "jhash ip6 saddr . ip6 daddr",
    }
    return [ChainObj(_stream_chain(stream.name, kind, version), (f"meta mark set {expr} {tail}", "drop"),
                     deps=(bucket.comment, counters.comment))
            for (kind, version), expr in hashes.items()]


# --- whole ruleset -----------------------------------------------------------------------------

def _nat_sets(nat: PortNatSpec) -> dict[int, SetObj]:
    out = {}
    for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        elements = frozenset(str(n) for n in nat.vips if n.version == version)
        out[version] = SetObj(f"nat-{nat.name}-{version}", f"type {kind}; flags interval;", elements)
    return out


def _nat_rules(nat: PortNatSpec, sets: dict[int, SetObj]) -> list[str]:
    p, port, target = nat.protocol.value, nat.port, nat.target_port
    rules = []
    for version, ip in ((4, "ip"), (6, "ip6")):
        name = sets[version].name
        rules.append(f"{ip} daddr @{name} {p} dport {port} {p} dport set {target}")
        rules.append(f"{ip} saddr @{name} {p} sport {target} {p} sport set {port}")
    # ICMPv4 errors quote VIP:port; the target listens on target-port. Rewrite the quoted port and put
    # the one's-complement difference into the unused word (zero in types 3 and 11) so the ICMP checksum
    # stays valid (raw payload writes do not fix checksums). ICMPv6 has no unused word: not translated.
    compensation = (port - target) % 0xFFFF
    rules.append(f"ip daddr @{sets[4].name} icmp type {{ destination-unreachable, time-exceeded }} "
                 f"@th,32,16 0x0 @th,64,8 0x45 @th,136,8 {nat.protocol.number} @th,224,16 {port} "
                 f"@th,32,16 set {compensation:#x} @th,224,16 set {target}")
    return rules


def _vip_set(version: int, vips: Iterable[Network]) -> SetObj:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    return SetObj(f"ipv{version}-vips", f"type {kind}; flags interval;",
                  frozenset(str(n) for n in vips if n.version == version))


def _base_chains(config: LbConfig, dispatch: dict[int, MapObj], nat_rules: list[str],
                 nat_deps: list[str]) -> list[ChainObj]:
    chains = [
        ChainObj("defrag-enable", ("meta l4proto tcp tproxy ip to 127.0.0.1:1",
                                   "meta l4proto tcp tproxy ip6 to [::1]:1")),
        ChainObj("notrack-prerouting", ("notrack",), Hook("prerouting", PRIO_RAW)),
        ChainObj("notrack-output", ("notrack",), Hook("output", PRIO_RAW)),
        ChainObj("classify", (f"ip daddr vmap @{dispatch[4].name}", f"ip6 daddr vmap @{dispatch[6].name}"),
                 Hook("prerouting", PRIO_MANGLE), deps=(dispatch[4].comment, dispatch[6].comment)),
    ]
    if config.target_interface_prefix:
        chains.append(ChainObj("defrag-skip", (f'iifname "{config.target_interface_prefix}*" notrack',),
                               Hook("prerouting", PRIO_DEFRAG_SKIP)))
    if nat_rules:
        chains.append(ChainObj("port-nat", tuple(nat_rules), Hook("prerouting", PRIO_NAT), deps=tuple(nat_deps)))
    return chains


def flow_order(flow: FlowSpec) -> tuple[int, str, str]:
    return (-flow.priority, flow.stream, flow.name)


def render(config: LbConfig) -> Ruleset:
    """The whole desired content of ``table inet meridio-lb`` for ``config``."""
    streams = {s.name: s for s in config.streams}
    flows = sorted((f for f in config.flows if f.stream in streams), key=flow_order)
    chains: list[ChainObj] = []
    dispatch_elements: dict[int, dict[str, str]] = {4: {}, 6: {}}
    for piece in pieces(config.vips, [v for f in flows for v in f.vips]):
        version = piece[0]
        name = _piece_chain(piece)
        chains.append(ChainObj(name, _vip_chain_rules([f for f in flows if covers(f, piece)], version)))
        dispatch_elements[version][_piece_key(piece)] = f"goto {name}"
    dispatch = {v: MapObj(f"dispatch{v}", f"type ipv{v}_addr : verdict; flags interval;", dispatch_elements[v])
                for v in (4, 6)}
    target_counters = {str(s.fwmark(t.identifier)): f'"{target_counter(s.fwmark(t.identifier))}"'
                       for s in config.streams for t in s.targets}
    counters_map = MapObj("target-counters", "type mark : counter;", target_counters)
    buckets = {}
    for stream in config.streams:
        bucket = _bucket_map(stream)
        buckets[bucket.name] = bucket
        chains += _stream_chains(stream, bucket, counters_map)
    sets = {s.name: s for s in (_vip_set(4, config.vips), _vip_set(6, config.vips))}
    nat_rules: list[str] = []
    nat_deps: list[str] = []
    for nat in sorted(config.port_nats, key=lambda n: n.name):
        nat_sets = _nat_sets(nat)
        sets.update({s.name: s for s in nat_sets.values()})
        nat_deps += [s.comment for s in nat_sets.values()]
        nat_rules += _nat_rules(nat, nat_sets)
    chains += _base_chains(config, dispatch, nat_rules, nat_deps)
    counters = frozenset({flow_counter(f.stream, f.name) for f in flows}
                         | {v.strip('"') for v in target_counters.values()})
    return Ruleset(counters=counters, sets=sets,
                   maps={m.name: m for m in (*dispatch.values(), counters_map)},
                   buckets=buckets, chains={c.name: c for c in chains})
