"""Encode the load balancer's desired state into the contents of the eBPF fast path's maps.

The same :class:`~ruleset.LbConfig` that :func:`ruleset.render` turns into nftables objects is turned
here into the bytes of each map of ``bpf/fastpath.bpf.c`` (:class:`Image`): the VIP pieces with their
flows in priority order inlined, the port NATs of each piece, the streams and their Maglev tables (as
target slots), the targets' nexthops. The struct formats below mirror the C structs; the loader checks
the kernel's value sizes against them. Pure: no I/O; slot numbers are given by the caller (:class:`Slots`).

What the program cannot decide exactly is encoded so that it passes the packet to the stack (the
nftables slow path decides): a flow with more source subnets, port ranges or byte matches than a flow
entry holds, the flows of a piece beyond :data:`MAX_FLOWS` - 1, a piece with more NATs than it holds or
with NATs that feed each other (nft applies them one after the other), a stream whose targets need slots
beyond :data:`MAX_TARGETS`. :func:`jhash` and :func:`bucket` are nft's hash, for tests and tools.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import struct
from collections.abc import Iterable, Mapping, Sequence

from meridio.loadbalancer import maglev
from meridio.loadbalancer.flows import FlowSpec, Network, PortNatSpec, PortRange, Protocol
from meridio.loadbalancer.ruleset import (
    LbConfig,
    StreamState,
    covers,
    flow_counter,
    flow_order,
    flow_protocols,
    maglev_table,
    pieces,
)

__all__ = ["MAX_VIPS", "MAX_FLOWS", "MAX_SRCS", "MAX_PORTS", "MAX_BMS", "MAX_NATS", "MAX_STREAMS", "MAX_TARGETS",
           "MAX_FLOW_COUNTERS", "VIP", "FLOW", "STREAM", "TARGET", "STATS", "Nexthop", "StreamImage", "Image",
           "Slots", "encode", "flow_key", "name_fingerprint", "target_slot", "jhash", "bucket", "hash_key"]

MAX_VIPS = 4096
MAX_FLOWS = 16
MAX_SRCS = 8
MAX_PORTS = 8
MAX_BMS = 4
MAX_NATS = 4
MAX_STREAMS = 256
MAX_TARGETS = 65536
MAX_FLOW_COUNTERS = 4096

FLOW_SLOW = 1
_PROTO_BIT = {Protocol.TCP: 1, Protocol.UDP: 2, Protocol.SCTP: 4}

_HEAD = struct.Struct("<IIBBBBBBH")
_RANGE = struct.Struct("<HH")
_BM = struct.Struct("<HBBII")
_NAT = struct.Struct("<BBHHH")
_SOURCE_SIZE = 32
FLOW = _HEAD.size + MAX_SRCS * _SOURCE_SIZE + 2 * MAX_PORTS * _RANGE.size + MAX_BMS * _BM.size
"""Bytes of ``struct flow``."""
VIP = 8 + MAX_NATS * _NAT.size + MAX_FLOWS * FLOW
"""Bytes of ``struct vip``."""
STREAM = struct.Struct("<IIII")
"""``struct stream``: seed, m, gen, pad."""
TARGET = struct.Struct("<II4s16s")
"""``struct target``: ifindex4, ifindex6, addr4 (raw), addr6 (raw)."""
STATS = struct.Struct("<QQ")
"""``struct stats``: packets, bytes (one per possible CPU in the per-CPU maps)."""
_EMPTY_FLOW = bytes(FLOW)


@dataclasses.dataclass(frozen=True)
class Nexthop:
    """Where the kernel routes a target for one family: the route's device and gateway."""

    ifindex: int
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True)
class StreamImage:
    seed: int
    m: int
    table: tuple[int, ...]
    """M target slots (0 = none: the program passes the packet, the slow path drops it)."""


@dataclasses.dataclass(frozen=True)
class Image:
    """The desired contents of every map; keys and values are the raw bytes the maps hold."""

    vip4: Mapping[bytes, bytes]
    vip6: Mapping[bytes, bytes]
    vip4_prefixes: Mapping[bytes, bytes]
    vip6_prefixes: Mapping[bytes, bytes]
    streams: Mapping[int, StreamImage]
    """stream slot -> its stream entry and table."""
    targets: Mapping[int, bytes]
    """target slot -> ``struct target``."""
    flow_counters: Mapping[str, int]
    """flow counter name (as nftables names it) -> flow_stats slot."""
    target_counters: Mapping[str, int]
    """target counter name (``tgt-<fwmark>``) -> target_stats slot."""


# --- nft's hash --------------------------------------------------------------------------------

def _rol(w: int, s: int) -> int:
    return ((w << s) | (w >> (32 - s))) & 0xFFFFFFFF


def jhash(key: bytes, seed: int) -> int:
    """The kernel's ``jhash(key, len(key), seed)`` (include/linux/jhash.h), as nft's jhash expression calls it."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(key) + seed) & m
    k, n = key, len(key)

    def mix(a: int, b: int, c: int) -> tuple[int, int, int]:
        a = (a - c) & m; a ^= _rol(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rol(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= _rol(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rol(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol(b, 4); b = (b + a) & m  # noqa: E702
        return a, b, c

    while n > 12:
        a = (a + int.from_bytes(k[0:4], "little")) & m
        b = (b + int.from_bytes(k[4:8], "little")) & m
        c = (c + int.from_bytes(k[8:12], "little")) & m
        a, b, c = mix(a, b, c)
        k, n = k[12:], n - 12
    if n == 0:
        return c
    tail = k.ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - _rol(b, 14)) & m  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & m  # noqa: E702
    return c


def hash_key(saddr: str, daddr: str, sport: int, dport: int) -> bytes:
    """nft's register layout of ``ip saddr . ip daddr . th sport . th dport``: each port zero-padded to 4 bytes."""
    return (ipaddress.ip_address(saddr).packed + ipaddress.ip_address(daddr).packed
            + sport.to_bytes(2, "big") + b"\0\0" + dport.to_bytes(2, "big") + b"\0\0")


def bucket(saddr: str, daddr: str, sport: int, dport: int, *, m: int, seed: int) -> int:
    """The bucket nft's ``jhash ... mod m seed seed`` gives (``reciprocal_scale``)."""
    return (jhash(hash_key(saddr, daddr, sport, dport), seed) * m) >> 32


# --- slots -------------------------------------------------------------------------------------

def name_fingerprint(name: str) -> int:
    """The 64-bit fingerprint a flow_stats slot is recorded under in ``flow_names`` (never 0)."""
    return maglev.stable_hash(name, "fastpath-flow") or 1


def flow_key(flow: FlowSpec) -> str:
    """The flow's counter name, as nftables names it (the fast path's counts are reported under it)."""
    return flow_counter(flow.stream, flow.name)


def target_slot(fwmark: int, first_fwmark: int) -> int:
    """A target's slot: its fwmark's place from the first offset, from 1 (0 = no target); 0 if beyond the map."""
    slot = fwmark - first_fwmark + 1
    return slot if 1 <= slot < MAX_TARGETS else 0


class Slots:
    """Stable small integers for names (flow counters, streams), kept across reconciles and restarts."""

    def __init__(self, size: int, held: Mapping[str, int] | None = None) -> None:
        self.size = size
        self.held: dict[str, int] = dict(held or {})

    def assign(self, names: Iterable[str]) -> tuple[dict[str, int], list[int]]:
        """Slots for exactly ``names`` (kept where held); returns (name -> slot, newly taken slots).
        A name that finds no free slot is left out (its packets take the slow path)."""
        wanted = set(names)
        self.held = {n: s for n, s in self.held.items() if n in wanted}
        used = set(self.held.values())
        free = (s for s in range(self.size) if s not in used)
        new = []
        for name in sorted(wanted - set(self.held)):
            slot = next(free, None)
            if slot is None:
                break
            self.held[name] = slot
            new.append(slot)
        return dict(self.held), new


# --- encoding ----------------------------------------------------------------------------------

def _source(net: Network) -> bytes:
    pad = b"\0" * (16 - len(net.network_address.packed))
    return net.network_address.packed + pad + net.netmask.packed + pad


def _ranges(ranges: Sequence[PortRange]) -> bytes:
    return b"".join(_RANGE.pack(r.first, r.last) for r in ranges).ljust(MAX_PORTS * _RANGE.size, b"\0")


def _flow(flow: FlowSpec, version: int, stream: int, counter: int | None, slow: bool) -> bytes | None:
    """``struct flow`` for one family, or None when the flow cannot match a packet of that family."""
    sources = flow.sources_of(version)
    protocols = flow_protocols(flow)
    if sources is None or not protocols:
        return None
    too_big = (len(sources) > MAX_SRCS or len(flow.source_ports) > MAX_PORTS
               or len(flow.destination_ports) > MAX_PORTS or len(flow.byte_matches) > MAX_BMS
               or any(not 0 <= bm.offset <= 0xFFFF or bm.length not in (1, 2, 4) for bm in flow.byte_matches))
    if slow or too_big or counter is None:
        return _HEAD.pack(0, 0, 0, FLOW_SLOW, 0, 0, 0, 0, 0).ljust(FLOW, b"\0")
    bits = sum(_PROTO_BIT[p] for p in protocols)
    head = _HEAD.pack(stream, counter, bits, 0, len(sources), len(flow.source_ports), len(flow.destination_ports),
                      len(flow.byte_matches), 0)
    srcs = b"".join(_source(n) for n in sources).ljust(MAX_SRCS * _SOURCE_SIZE, b"\0")
    bms = b"".join(_BM.pack(bm.offset, bm.length, 0, bm.value,
                            bm.mask if bm.mask is not None else (1 << (8 * bm.length)) - 1)
                   for bm in flow.byte_matches).ljust(MAX_BMS * _BM.size, b"\0")
    return head + srcs + _ranges(flow.source_ports) + _ranges(flow.destination_ports) + bms


def _nats(nats: Sequence[PortNatSpec]) -> bytes | None:
    """The piece's NAT entries; None when the program cannot apply them as nft does (too many, or chained)."""
    if len(nats) > MAX_NATS:
        return None
    seen = {(n.protocol, n.port) for n in nats}
    if len(seen) != len(nats) or any((n.protocol, n.target_port) in seen for n in nats):
        return None  # nft's rules run in turn: 80->4000 then 4000->5000 would both apply
    return b"".join(_NAT.pack(_PROTO_BIT[n.protocol], 0, n.port, n.target_port, 0) for n in nats).ljust(
        MAX_NATS * _NAT.size, b"\0")


def _nat_covers(nat: PortNatSpec, piece: tuple[int, int, int]) -> bool:
    version, first, last = piece
    return any(n.version == version and int(n.network_address) <= first and last <= int(n.broadcast_address)
               for n in nat.vips)


_SLOW_VIP = (struct.pack("<II", 1, 0) + bytes(MAX_NATS * _NAT.size)
             + _HEAD.pack(0, 0, 0, FLOW_SLOW, 0, 0, 0, 0, 0).ljust(FLOW, b"\0") + _EMPTY_FLOW * (MAX_FLOWS - 1))


def _vip_value(flows: Sequence[FlowSpec], nats: Sequence[PortNatSpec], version: int,
               stream_slots: Mapping[str, int], flow_slots: Mapping[str, int], slow_streams: set[str]) -> bytes:
    nat_bytes = _nats(nats)
    if nat_bytes is None:
        return _SLOW_VIP
    entries = []
    for f in flows:
        slot = stream_slots.get(f.stream)
        entry = _flow(f, version, slot or 0, flow_slots.get(flow_key(f)), slot is None or f.stream in slow_streams)
        if entry is not None:
            entries.append(entry)
    if len(entries) > MAX_FLOWS:
        entries = entries[:MAX_FLOWS - 1] + [_HEAD.pack(0, 0, 0, FLOW_SLOW, 0, 0, 0, 0, 0).ljust(FLOW, b"\0")]
    return (struct.pack("<II", len(entries), len(nats)) + nat_bytes
            + b"".join(entries) + _EMPTY_FLOW * (MAX_FLOWS - len(entries)))


def _piece_keys(piece: tuple[int, int, int]) -> tuple[bool, list[bytes]]:
    """(exact, keys): a one-address piece is one hash key, a range is LPM keys of its covering prefixes."""
    version, first, last = piece
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    if first == last:
        return True, [cls(first).packed]
    return False, [struct.pack("<I", n.prefixlen) + n.network_address.packed
                   for n in ipaddress.summarize_address_range(cls(first), cls(last))]


def _target(stream: StreamState, identifier: int, nexthops: Mapping[tuple[int, int], Nexthop]) -> bytes:
    fwmark = stream.fwmark(identifier)
    v4, v6 = nexthops.get((fwmark, 4)), nexthops.get((fwmark, 6))
    return TARGET.pack(v4.ifindex if v4 else 0, v6.ifindex if v6 else 0, v4.gateway.packed if v4 else b"\0" * 4,
                       v6.gateway.packed if v6 else b"\0" * 16)


def _stream(stream: StreamState, first_fwmark: int) -> StreamImage | None:
    """The stream's entry and table of target slots; None if a target has no slot (slow stream)."""
    ids = tuple(sorted(t.identifier for t in stream.targets))
    slots = {i: target_slot(stream.fwmark(i), first_fwmark) for i in ids}
    if any(s == 0 for s in slots.values()):
        return None
    if not ids:
        return StreamImage(stream.seed, stream.m, (0,) * stream.m)
    base = stream.offset - first_fwmark + 1  # slot = offset + identifier - first + 1
    return StreamImage(stream.seed, stream.m, _slot_table(ids, stream.m, stream.max_targets, base))


@functools.lru_cache(maxsize=8)
def _slot_table(ids: tuple[int, ...], m: int, max_targets: int, base: int) -> tuple[int, ...]:
    """The Maglev table as target slots (cached: a reconcile that changes nothing else costs no rebuild)."""
    return tuple(base + i for i in maglev_table(ids, m, max_targets))


def encode(config: LbConfig, *, first_fwmark: int, stream_slots: Mapping[str, int], flow_slots: Mapping[str, int],
           nexthops: Mapping[tuple[int, int], Nexthop]) -> Image:
    """The maps' contents for ``config``. ``stream_slots``/``flow_slots`` come from :class:`Slots`;
    ``nexthops`` maps (fwmark, IP version) to the route the kernel has for that target."""
    streams = {s.name: s for s in config.streams}
    flows = sorted((f for f in config.flows if f.stream in streams), key=flow_order)
    images: dict[int, StreamImage] = {}
    slow: set[str] = set()
    targets: dict[int, bytes] = {}
    target_counters: dict[str, int] = {}
    for s in config.streams:
        slot = stream_slots.get(s.name)
        image = _stream(s, first_fwmark)
        if slot is None or image is None:
            slow.add(s.name)
            continue
        images[slot] = image
        for t in s.targets:
            tslot = target_slot(s.fwmark(t.identifier), first_fwmark)
            targets[tslot] = _target(s, t.identifier, nexthops)
            target_counters[f"tgt-{s.fwmark(t.identifier)}"] = tslot
    maps: dict[str, dict[bytes, bytes]] = {"vip4": {}, "vip6": {}, "vip4_prefixes": {}, "vip6_prefixes": {}}
    nats = sorted(config.port_nats, key=lambda n: n.name)
    cuts = [v for f in flows for v in f.vips] + [v for n in nats for v in n.vips]
    for piece in pieces(config.vips, cuts):
        version = piece[0]
        value = _vip_value([f for f in flows if covers(f, piece)], [n for n in nats if _nat_covers(n, piece)],
                           version, {n: s for n, s in stream_slots.items() if n not in slow}, flow_slots, slow)
        exact, keys = _piece_keys(piece)
        name = f"vip{version}" + ("" if exact else "_prefixes")
        for key in keys:
            maps[name][key] = value
    counters = {flow_key(f): flow_slots[flow_key(f)] for f in flows if flow_key(f) in flow_slots}
    return Image(maps["vip4"], maps["vip6"], maps["vip4_prefixes"], maps["vip6_prefixes"], images, targets,
                 counters, target_counters)
