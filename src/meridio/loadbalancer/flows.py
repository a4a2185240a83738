"""Flows, VIPs, port NATs and targets parsed at the edge into typed values the ruleset can trust.

Input is the nsp.v1 model (:mod:`meridio.api.model`); output is frozen dataclasses holding
``ipaddress`` networks, integer port ranges and byte matches. Anything nftables would refuse (or that
would silently mean something else) raises :class:`InputError` naming the object, the field and the
rule, so the caller logs it and skips that one object; the rest of the configuration still applies.
Pure: no I/O. Messages follow Meridio's webhook wording where it has one (reference §2).
"""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Iterable

from meridio.api import model

__all__ = ["Network", "Protocol", "PortRange", "ByteMatch", "FlowSpec", "PortNatSpec", "TargetSpec",
           "InputError", "parse_network", "parse_port_range", "parse_byte_match", "flow_spec", "vip_networks",
           "port_nat_spec", "target_spec", "merge_ranges", "ANY_PORTS"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_PAYLOAD_OFFSET = 65535
"""Largest byte offset a kernel payload expression accepts (the L4 header offset of a byte match)."""


class InputError(ValueError):
    """A configuration object cannot be programmed; ``str()`` says which field breaks which rule."""

    def __init__(self, kind: str, name: str, field: str, rule: str) -> None:
        self.kind, self.name, self.field, self.rule = kind, name, field, rule
        super().__init__(f"{kind} {name!r}: {field}: {rule}")


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"

    @property
    def number(self) -> int:
        return {"tcp": 6, "udp": 17, "sctp": 132}[self.value]


@dataclasses.dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    @property
    def is_any(self) -> bool:
        return self.first == 0 and self.last == 65535

    def nft(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


ANY_PORTS = (PortRange(0, 65535),)


@dataclasses.dataclass(frozen=True)
class ByteMatch:
    """``proto[offset:length] (& mask)? = value`` on the L4 header (offsets in bytes)."""

    protocol: Protocol
    offset: int
    length: int
    value: int
    mask: int | None = None

    def nft(self) -> str:
        bits = f"@th,{self.offset * 8},{self.length * 8}"
        if self.mask is None:
            return f"{bits} {self.value:#x}"
        return f"{bits} & {self.mask:#x} == {self.value:#x}"


@dataclasses.dataclass(frozen=True)
class FlowSpec:
    stream: str
    name: str
    priority: int
    protocols: tuple[Protocol, ...]
    sources: tuple[Network, ...]
    """Merged source subnets; empty means any source."""
    source_ports: tuple[PortRange, ...]
    """Merged; empty means any port."""
    destination_ports: tuple[PortRange, ...]
    vips: tuple[Network, ...]
    byte_matches: tuple[ByteMatch, ...] = ()

    def sources_of(self, version: int) -> tuple[Network, ...] | None:
        """Source subnets of one IP family: ``()`` = any source, ``None`` = this family cannot match."""
        if not self.sources:
            return ()
        mine = tuple(n for n in self.sources if n.version == version)
        if not mine:
            return None
        return () if any(n.prefixlen == 0 for n in mine) else mine


@dataclasses.dataclass(frozen=True)
class PortNatSpec:
    port: int
    target_port: int
    protocol: Protocol
    vips: tuple[Network, ...]

    @property
    def name(self) -> str:
        return f"{self.port}-{self.target_port}-{self.protocol.value}"


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A DEFAULT target of a stream with a valid identifier: its IPs without prefix length."""

    identifier: int
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]


def parse_network(text: str) -> Network:
    """A CIDR prefix that must be the network address (``10.0.0.1/24`` is refused)."""
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise ValueError(f"{text} is not a valid prefix") from None
    if iface.ip != iface.network.network_address:
        raise ValueError(f"{text} is not a valid prefix, probably {iface.network} should be used")
    return iface.network


_PORT_RE = re.compile(r"^\d+$")


def _port(text: str, which: str) -> int:
    if not _PORT_RE.match(text.strip()) or int(text) > 65535:
        raise ValueError(f"{which} port {text} is not a valid port number, an integer between 0 and 65535")
    return int(text)


def parse_port_range(text: str) -> PortRange:
    """``N``, ``A-B`` or ``any`` (= 0-65535), with Meridio's error messages."""
    raw = text.strip()
    if raw == "any":
        return PortRange(0, 65535)
    parts = raw.split("-")
    if len(parts) == 1:
        port = _port(parts[0], "starting")
        return PortRange(port, port)
    if len(parts) != 2:
        raise ValueError("wrong format to define port range, <starting port>-<ending port>")
    first, last = _port(parts[0], "starting"), _port(parts[1], "ending")
    if first > last:
        raise ValueError("starting port cannot be larger than ending port in the ports range")
    return PortRange(first, last)


_BYTE_MATCH_RE = re.compile(
    r"^(sctp|tcp|udp)\[([0-9]+) *: *([124])\]( *& *(0x[0-9a-f]+))? *= *([0-9]+|0x[0-9a-f]+)$")


def parse_byte_match(text: str) -> ByteMatch:
    """``proto[offset:len] (& 0xmask)? = value``, len 1, 2 or 4 bytes (Meridio's regex, plus range checks)."""
    m = _BYTE_MATCH_RE.match(text.strip())
    if not m:
        raise ValueError("byte match wrong format")
    proto, offset, length = Protocol(m.group(1)), int(m.group(2)), int(m.group(3))
    mask = int(m.group(5), 16) if m.group(5) else None
    value = int(m.group(6), 0)
    limit = 1 << (8 * length)
    if offset + length - 1 > MAX_PAYLOAD_OFFSET:
        raise ValueError(f"offset {offset} is beyond the {MAX_PAYLOAD_OFFSET} bytes the kernel can load")
    if value >= limit or (mask is not None and mask >= limit):
        raise ValueError(f"value and mask must fit in {length} byte(s)")
    if mask is not None and value & ~mask:
        raise ValueError(f"value {value:#x} has bits outside the mask {mask:#x}: it can never match")
    return ByteMatch(proto, offset, length, value, mask)


def merge_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, overlapping and adjacent ranges joined (nft interval sets refuse overlaps)."""
    out: list[PortRange] = []
    for r in sorted(ranges):
        if out and r.first <= out[-1].last + 1:
            out[-1] = PortRange(out[-1].first, max(out[-1].last, r.last))
        else:
            out.append(r)
    return tuple(out)


def _merge_networks(nets: Iterable[Network]) -> tuple[Network, ...]:
    v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
    v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
    return tuple(v4) + tuple(v6)


def _ports(kind: str, name: str, field: str, texts: Iterable[str]) -> tuple[PortRange, ...]:
    ranges = []
    for i, text in enumerate(texts):
        try:
            ranges.append(parse_port_range(text))
        except ValueError as exc:
            raise InputError(kind, name, f"{field}[{i}]", str(exc)) from None
    merged = merge_ranges(ranges)
    return () if any(r.is_any for r in merged) else merged


def vip_networks(kind: str, name: str, vips: Iterable[model.Vip]) -> tuple[Network, ...]:
    nets = []
    for vip in vips:
        try:
            nets.append(parse_network(vip.address))
        except ValueError as exc:
            raise InputError(kind, name, f"vip {vip.name!r} address", str(exc)) from None
    return tuple(sorted(set(nets), key=lambda n: (n.version, n)))


def flow_spec(flow: model.Flow) -> FlowSpec:
    """Parse one flow; raises :class:`InputError` for the first field that breaks a rule."""
    name = flow.name
    if flow.stream is None or not flow.stream.name:
        raise InputError("flow", name, "stream", "a flow must belong to a stream")
    protocols: list[Protocol] = []
    for i, p in enumerate(flow.protocols):
        try:
            proto = Protocol(p.strip().lower())
        except ValueError:
            raise InputError("flow", name, f"protocols[{i}]", f"{p!r} is not one of tcp, udp, sctp") from None
        if proto in protocols:
            raise InputError("flow", name, "protocols", "duplicated protocols")
        protocols.append(proto)
    if not protocols:
        raise InputError("flow", name, "protocols", "at least one protocol is required")
    sources = []
    for i, text in enumerate(flow.source_subnets):
        try:
            sources.append(parse_network(text))
        except ValueError as exc:
            raise InputError("flow", name, f"source subnet[{i}]", str(exc)) from None
    matches = []
    for i, text in enumerate(flow.byte_matches):
        try:
            matches.append(parse_byte_match(text))
        except ValueError as exc:
            raise InputError("flow", name, f"byte matches[{i}]", str(exc)) from None
    return FlowSpec(
        stream=flow.stream.name, name=name, priority=int(flow.priority),
        protocols=tuple(sorted(protocols, key=lambda p: p.number)),
        sources=_merge_networks(sources),
        source_ports=_ports("flow", name, "source port", flow.source_port_ranges),
        destination_ports=_ports("flow", name, "destination port", flow.destination_port_ranges),
        vips=vip_networks("flow", name, flow.vips),
        byte_matches=tuple(matches),
    )


def port_nat_spec(conduit: str, nat: model.PortNat) -> PortNatSpec:
    where = f"destination port nats {nat.nat_name}"
    try:
        proto = Protocol(nat.protocol.strip().lower())
    except ValueError:
        raise InputError("conduit", conduit, f"{where} protocol", f"{nat.protocol!r} is not one of tcp, udp, "
                         "sctp") from None
    for field, port in (("port", nat.port), ("target-port", nat.target_port)):
        if not 1 <= port <= 65535:
            raise InputError("conduit", conduit, f"{where} {field}", f"{port} is not a port between 1 and 65535")
    return PortNatSpec(nat.port, nat.target_port, proto, vip_networks("conduit", conduit, nat.vips))


def target_spec(target: model.Target, max_targets: int) -> TargetSpec:
    """A DEFAULT target's identifier (1..max-targets) and IPs; :class:`InputError` otherwise."""
    label = ",".join(target.ips) or "?"
    raw = target.identifier
    if raw is None or not raw.strip().isdigit():
        raise InputError("target", label, "context identifier", f"{raw!r} is not a numeric identifier")
    identifier = int(raw)
    if not 1 <= identifier <= max_targets:
        raise InputError("target", label, "context identifier",
                         f"{identifier} is outside 1..{max_targets} (the stream's max-targets)")
    ips = []
    for text in target.ips:
        try:
            ips.append(ipaddress.ip_interface(text.strip()).ip)
        except ValueError:
            raise InputError("target", label, "ips", f"{text!r} is not an IP address") from None
    if not ips:
        raise InputError("target", label, "ips", "a target needs at least one IP address")
    return TargetSpec(identifier, tuple(ips))
