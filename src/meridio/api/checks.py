"""Meridio's value rules (ports, prefixes, byte matches, durations, IPs), pure and shared.

Each check returns ``None`` when the value is fine or Meridio's exact message (``api/v1/types.go``,
``flow_webhook.go``, ``gateway_webhook.go``, ``pkg/configuration/reader``) when it is not. The
resource validator and the ConfigMap codec both call these, so a rule is written once.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Sequence

from meridio.common import durations

__all__ = [
    "PortRange", "parse_port_range", "check_ports", "ANY_PORTS",
    "parse_prefix", "check_prefix", "check_prefix_or_range", "check_subnets",
    "BYTE_MATCH_PATTERN", "is_byte_match", "check_byte_matches",
    "parse_ip", "ip_family_of", "duration_ns", "check_duration_at_least", "round_duration",
    "PROTOCOLS", "check_protocols", "NatEntry", "check_port_nats", "CheckError",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOCOLS = ("tcp", "udp", "sctp")
ANY_PORTS = "0-65535"
BYTE_MATCH_PATTERN = r"^(sctp|tcp|udp)\[[0-9]+ *: *[124]\]( *& *0x[0-9a-f]+)? *= *([0-9]+|0x[0-9a-f]+)$"
_BYTE_MATCH = re.compile(BYTE_MATCH_PATTERN[1:-1])
_DIGITS = re.compile(r"[0-9]+")
_MAX_DURATION_S = (2**63 - 1) / 1e9


class CheckError(ValueError):
    """A value broke a Meridio rule; ``str()`` is Meridio's message."""


# --- ports ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, order=True)
class PortRange:
    start: int
    end: int

    def overlaps(self, other: PortRange) -> bool:
        return self.start <= other.end and other.start <= self.end


def _port_number(text: str, which: str) -> int:
    # Go strconv.ParseUint(s, 10, 16): ASCII digits only, leading zeros allowed, <= 65535.
    if not _DIGITS.fullmatch(text) or len(text.lstrip("0")) > 5 or int(text) > 65535:
        raise CheckError(f"{which} port {text} is not a valid port number, an integer between 0 and 65535")
    return int(text)


def parse_port_range(text: str) -> PortRange:
    """``"N"``, ``"A-B"`` or ``"any"`` (0-65535), else :class:`CheckError` with Meridio's message."""
    if "-" in text:
        parts = text.split("-")
        if len(parts) != 2:
            raise CheckError("wrong format to define port range, <starting port>-<ending port>")
        start, end = _port_number(parts[0], "starting"), _port_number(parts[1], "ending")
    elif text == "any":
        start, end = 0, 65535
    else:
        start = end = _port_number(text, "starting")
        _port_number(text, "ending")
    if start > end:
        raise CheckError("starting port cannot be larger than ending port in the ports range")
    return PortRange(start, end)


def check_ports(values: Sequence[str]) -> tuple[int, str] | None:
    """First bad entry of a port list as ``(index, "[i]: <message>")``; overlaps count as bad."""
    seen: list[PortRange] = []
    for i, text in enumerate(values):
        try:
            candidate = parse_port_range(text)
        except CheckError as exc:
            return i, f"[{i}]: {exc}"
        if any(candidate.overlaps(r) for r in seen):
            return i, f"[{i}]: overlapping ports"
        seen.append(candidate)
    return None


# --- prefixes and addresses -------------------------------------------------------------------------

def parse_prefix(text: str) -> IPNetwork:
    """A CIDR that is its own network address (Go ``validatePrefix``), else :class:`CheckError`."""
    if "/" not in text:
        raise CheckError(f"invalid CIDR address: {text}")
    addr_text, _, length = text.partition("/")
    if "%" in addr_text:  # Go rejects IPv6 zones in a CIDR
        raise CheckError(f"invalid CIDR address: {text}")
    try:
        iface = ipaddress.ip_interface(f"{addr_text}/{int(length)}" if _DIGITS.fullmatch(length) else "x")
    except ValueError:
        raise CheckError(f"invalid CIDR address: {text}") from None
    if iface.ip != iface.network.network_address:
        raise CheckError(f"{text} is not a valid prefix, probably {iface.network} should be used")
    return iface.network


def check_prefix(text: str) -> str | None:
    try:
        parse_prefix(text)
    except CheckError as exc:
        return str(exc)
    return None


def check_prefix_or_range(text: str) -> str | None:
    """Attractor ``ipv4-prefix``/``ipv6-prefix``: a prefix, or ``first-last/len`` ranges joined by ``;``."""
    composite = text.split(";")
    network: IPNetwork | None = None
    for part in composite:
        first, sep, cidr = part.partition("-")
        if not sep:
            if len(composite) > 1:
                return f"[{' '.join(composite)}] composite subnet config is invalid"
            return check_prefix(part)
        try:
            first_ip = ipaddress.ip_address(first)
        except ValueError:
            return f"'{first}' is not a valid IP range start"
        try:
            net = ipaddress.ip_interface(cidr).network
        except ValueError:
            return f"'{cidr}' is not a valid CIDR: invalid CIDR address: {cidr}"
        if first_ip.version != net.version or first_ip not in net:
            return f"'{net}' is not a valid IP range start for CIDR {first_ip}"
        if network is None:
            network = net
        elif network.network_address != net.network_address:
            return f"network mismatch: '{network}' != '{net}'"
        elif network.prefixlen != net.prefixlen:
            return f"network mask mismatch: {network.netmask.packed.hex()} != {net.netmask.packed.hex()}"
    return None


def check_subnets(values: Sequence[str]) -> tuple[int, str] | None:
    """First bad source subnet as ``(index, "[i]: <msg>")`` or ``(index, "[i] and [j]: overlapping subnet")``."""
    seen: list[IPNetwork] = []
    for i, text in enumerate(values):
        try:
            net = parse_prefix(text)
        except CheckError as exc:
            return i, f"[{i}]: {exc}"
        for j, other in enumerate(seen):
            if net.version == other.version and net.overlaps(other):
                return i, f"[{i}] and [{j}]: overlapping subnet"
        seen.append(net)
    return None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go ``net.ParseIP``: a plain address (no mask, no zone), else None."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_family_of(text: str) -> str:
    """``ipv4`` when the address is IPv4 (or IPv4-mapped IPv6, as Go's ``To4()``), else ``ipv6``."""
    ip = parse_ip(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return "ipv6"
    return "ipv4" if ip is not None else "ipv6"


# --- byte matches, protocols ------------------------------------------------------------------------

def is_byte_match(text: str) -> bool:
    """Meridio's byte-match format, e.g. ``tcp[2:2] = 4002`` or ``udp[8:1] & 0xf0 = 0x40``."""
    return _BYTE_MATCH.fullmatch(text) is not None


def check_byte_matches(values: Sequence[str]) -> tuple[int, str] | None:
    for i, text in enumerate(values):
        if not is_byte_match(text):
            return i, f"[{i}]: byte match wrong format"
    return None


def check_protocols(values: Sequence[str]) -> str | None:
    return "duplicated protocols" if len(set(values)) != len(values) else None


# --- durations --------------------------------------------------------------------------------------

def duration_ns(text: str) -> int:
    """A Go duration in whole nanoseconds; :class:`CheckError` with Meridio's format message."""
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError:
        raise CheckError("invalid time duration format, must be a decimal number with time unit ms/s/m/h") from None
    if text != text.strip() or not math.isfinite(seconds) or abs(seconds) > _MAX_DURATION_S:
        # Go rejects surrounding spaces, and durations beyond ~292 years overflow its int64 nanoseconds
        raise CheckError("invalid time duration format, must be a decimal number with time unit ms/s/m/h")
    return round(seconds * 1e9)


def check_duration_at_least(text: str, bound_ms: int) -> str | None:
    """Meridio ``timeInBound``: parse, truncate to milliseconds, compare with the bound."""
    try:
        ns = duration_ns(text)
    except CheckError as exc:
        return str(exc)
    ms = int(ns / 1_000_000)  # Go Duration.Milliseconds() truncates towards zero
    if ms < bound_ms:
        return f"invalid time duration value, must > {_go_duration(bound_ms)}"
    return None


def round_duration(text: str, unit_ns: int) -> int:
    """Go ``d.Round(unit) / unit`` (halves away from zero); 0 when ``text`` does not parse."""
    try:
        ns = duration_ns(text)
    except CheckError:
        return 0
    q, r = divmod(abs(ns), unit_ns)
    q += 1 if 2 * r >= unit_ns else 0
    return q if ns >= 0 else -q


def _go_duration(ms: int) -> str:
    """Go's ``Duration.String()`` for the bounds used here (whole seconds or zero)."""
    return "0s" if ms == 0 else (f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms")


# --- destination port NAT ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NatEntry:
    port: int
    target_port: int
    vips: tuple[str, ...]
    protocol: str


def check_port_nats(entries: Sequence[NatEntry]) -> str | None:
    """Meridio's conduit port-NAT rule: identical ``port-targetPort-protocol`` entries
    ``"[i] and [j] must be merged"``; a ``{port or target-port, vip, protocol}`` key used twice
    ``"[i] and [j] are colliding"`` (the first problem only, as Meridio)."""
    merged: dict[str, int] = {}
    by_target: dict[str, int] = {}
    by_port: dict[str, int] = {}
    for i, nat in enumerate(entries):
        ident = f"{nat.port}-{nat.target_port}-{nat.protocol}"
        if ident in merged:
            return f"[{merged[ident]}] and [{i}] must be merged"
        merged[ident] = i
        for vip in nat.vips:
            target_key = f"{nat.target_port}-{vip}-{nat.protocol}"
            port_key = f"{nat.port}-{vip}-{nat.protocol}"
            for table, k in ((by_target, target_key), (by_target, port_key), (by_port, target_key), (by_port, port_key)):
                if k in table:
                    return f"[{table[k]}] and [{i}] are colliding"
            by_target[target_key] = i
            by_port[port_key] = i
    return None
