"""Render the frontend's bird.conf: a pure function from a :class:`BirdConfig` to BIRD 2 text.

Mirrors the configuration Meridio's frontend generates (``cmd/frontend/internal/frontend/service.go``,
reference §3.6), section by section and in the same order:

1. logging (file with rotation, stderr), the router id, ``protocol device``;
2. filters ``default_rt`` (static gateways' import), ``cluster_breakout`` (what reaches kernel table 4096:
   default routes and BGP routes), ``cluster_access`` (what BGP exports: the VIP static routes only);
3. BGP templates ``LINK4``/``LINK6``;
4. the VIPs (``protocol static VIP4``/``VIP6``), only while they may be announced;
5. VRRP default routes, or else the drop-if-no-peer blackhole tables exported to kernel table 4097;
6. kernel protocols exporting to table 4096 (``merge paths on`` for ECMP);
7. one protocol per gateway, ``NBR-<gateway>``: BGP (per-session BFD, MD5 password) or a static default
   route (optionally BFD-supervised);
8. ``protocol bfd 'NBR-BFD'`` (static gateways' BFD timers are per interface in BIRD).

Every section depends only on its own inputs, so a change of one VIP or one gateway changes only the
lines of that VIP or gateway, and BIRD's ``configure`` restarts only the protocols whose text changed.
The golden files in ``tests/unit/golden/bird`` are checked by the real ``bird -p``.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import ipaddress
import re
from collections.abc import Iterable

__all__ = [
    "Family", "GatewayProtocol", "Bfd", "SessionTimers", "BirdGateway", "BirdConfig", "ConfigError",
    "render", "protocol_name", "BFD_PROTOCOL", "NAME_PREFIX", "check_password", "check_name", "derive_router_id",
    "gateway_at_line",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAME_PREFIX = "NBR-"
"""Prefix of every gateway protocol (Meridio's ``NBR-<gateway>``); the supervisor lists ``NBR-*``."""
BFD_PROTOCOL = "NBR-BFD"
_SYMBOL = re.compile(r"^[A-Za-z0-9_.:-]{1,60}$")
"""Characters BIRD accepts in an apostrophed symbol; 60 + len("NBR-") = BIRD's 64-character limit."""
MAX_PASSWORD_LEN = 80
"""Linux ``TCP_MD5SIG_MAXKEYLEN``."""
MAX_METRIC = 4294967295


class ConfigError(ValueError):
    """An input cannot be expressed in bird.conf (the message names the field and the rule)."""


class Family(enum.Enum):
    IPV4 = 4
    IPV6 = 6

    @property
    def channel(self) -> str:
        return "ipv4" if self is Family.IPV4 else "ipv6"

    @property
    def suffix(self) -> str:
        return "4" if self is Family.IPV4 else "6"

    @property
    def default_route(self) -> str:
        return "0.0.0.0/0" if self is Family.IPV4 else "::/0"

    @staticmethod
    def of(addr: IPAddress | IPNetwork) -> Family:
        return Family.IPV4 if addr.version == 4 else Family.IPV6


class GatewayProtocol(enum.Enum):
    BGP = "bgp"
    STATIC = "static"


@dataclasses.dataclass(frozen=True)
class Bfd:
    """BFD timers of one session (BIRD ``bfd { ... }`` / ``interface { ... }``)."""

    min_rx_ms: int
    min_tx_ms: int
    multiplier: int

    def __post_init__(self) -> None:
        if self.min_rx_ms < 1 or self.min_tx_ms < 1:
            raise ConfigError("bfd: min-rx and min-tx must be at least 1ms")
        if not 1 <= self.multiplier <= 255:
            raise ConfigError("bfd: multiplier must be between 1 and 255")

    def lines(self) -> list[str]:
        return [f"min rx interval {self.min_rx_ms} ms;", f"min tx interval {self.min_tx_ms} ms;",
                f"multiplier {self.multiplier};"]


@dataclasses.dataclass(frozen=True)
class SessionTimers:
    """BGP reconnection timers. ``None`` keeps BIRD's defaults (production); tests set them small."""

    connect_retry_s: int | None = None
    """``connect retry time``: seconds between connection attempts (BIRD default 120)."""
    error_wait_s: tuple[int, int] | None = None
    """``error wait time min,max``: back-off after an error (BIRD default 60,300)."""
    connect_delay_s: int | None = None
    """``connect delay time``: delay before the first connection attempt (BIRD default 5)."""

    def lines(self) -> list[str]:
        out = []
        if self.connect_retry_s is not None:
            out.append(f"connect retry time {self.connect_retry_s};")
        if self.error_wait_s is not None:
            out.append(f"error wait time {self.error_wait_s[0]},{self.error_wait_s[1]};")
        if self.connect_delay_s is not None:
            out.append(f"connect delay time {self.connect_delay_s};")
        return out


def derive_router_id(seed: str, addresses: Iterable[IPAddress] = ()) -> ipaddress.IPv4Address:
    """A deterministic BGP router id: the lowest IPv4 address given, else 4 bytes of SHA-256(``seed``).

    BIRD would pick an IPv4 interface address itself and refuses to start without one, so an IPv6-only
    frontend needs this. The hashed id avoids 0.0.0.0 and 255.255.255.255 (not valid router ids).
    """
    v4 = sorted(a for a in addresses if isinstance(a, ipaddress.IPv4Address))
    if v4:
        return v4[0]
    value = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
    return ipaddress.IPv4Address(min(max(value, 1), 2**32 - 2))


def check_name(name: str) -> str:
    if not _SYMBOL.match(name):
        raise ConfigError(f"gateway name {name!r}: must be 1-60 characters of letters, digits, '_', '.', ':', '-'")
    return name


def check_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD_LEN:
        raise ConfigError(f"bgp password: must be 1-{MAX_PASSWORD_LEN} characters")
    if any(c in password for c in '"\n\r\0'):
        raise ConfigError("bgp password: must not contain a double quote, a newline or a NUL character")
    return password


@dataclasses.dataclass(frozen=True)
class BirdGateway:
    """One gateway, with every default already applied and its password resolved."""

    name: str
    address: IPAddress
    protocol: GatewayProtocol = GatewayProtocol.BGP
    local_asn: int = 8103
    remote_asn: int = 4248829953
    local_port: int = 10179
    remote_port: int = 10179
    hold_time_s: int = 0
    """0: the template's hold time."""
    bfd: Bfd | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.password is not None:
            check_password(self.password)
        for field, value, top in (("local-asn", self.local_asn, 2**32 - 1), ("remote-asn", self.remote_asn, 2**32 - 1),
                                  ("local-port", self.local_port, 65535), ("remote-port", self.remote_port, 65535)):
            if not 1 <= value <= top:
                raise ConfigError(f"gateway {self.name}: {field} must be between 1 and {top}")

    @property
    def family(self) -> Family:
        return Family.of(self.address)

    @property
    def protocol_name(self) -> str:
        return protocol_name(self.name)


def protocol_name(gateway: str) -> str:
    return NAME_PREFIX + gateway


@dataclasses.dataclass(frozen=True)
class BirdConfig:
    interface: str
    """The external interface (``NFE_EXTERNAL_INTERFACE``)."""
    router_id: ipaddress.IPv4Address
    vips: tuple[IPNetwork, ...] = ()
    gateways: tuple[BirdGateway, ...] = ()
    advertise_vips: bool = False
    """Render the VIP static protocols (only when the FE has connectivity and its LB has a target)."""
    table_id: int = 4096
    ecmp: bool = False
    drop_if_no_peer: bool = True
    vrrps: tuple[IPAddress, ...] = ()
    log_bird: bool = False
    """``log stderr all`` (copied into the frontend's log) instead of warnings and errors only."""
    log_file: str | None = "/var/log/bird.log"
    log_file_size: int = 20000
    hold_time_s: int = 3
    """The templates' hold time (``NFE_BGP_HOLD_TIME``)."""
    kernel_scan_time_s: int = 10
    timers: SessionTimers = SessionTimers()

    def families(self, items: tuple[IPAddress, ...] | tuple[IPNetwork, ...]) -> list[Family]:
        present = {Family.of(i) for i in items}
        return [f for f in Family if f in present]


def render(cfg: BirdConfig) -> str:
    sections = [_logging(cfg), _filters(), _templates(cfg), _vips(cfg), _drop_or_vrrp(cfg), _kernel(cfg),
                _gateways(cfg), _bfd(cfg)]
    return "\n".join(line for section in sections for line in section) + "\n"


def _block(head: str, body: list[str], indent: str = "    ") -> list[str]:
    return [f"{head} {{", *(indent + line for line in body), "}"]


def _logging(cfg: BirdConfig) -> list[str]:
    out = []
    if cfg.log_file:
        classes = "debug, trace, info, remote, warning, error, auth, fatal, bug"
        out.append(f'log "{cfg.log_file}" {cfg.log_file_size} "{cfg.log_file}.backup" {{ {classes} }};')
    out.append("log stderr all;" if cfg.log_bird else "log stderr { error, fatal, bug, warning };")
    out += [f"router id {cfg.router_id};", "", "protocol device {", "}", ""]
    return out


def _filters() -> list[str]:
    return [
        "filter default_rt {",
        "    if ( net = 0.0.0.0/0 ) then accept;",
        "    if ( net = ::/0 ) then accept;",
        "    else reject;",
        "}",
        "",
        "filter cluster_breakout {",
        "    if ( net = 0.0.0.0/0 ) then accept;",
        "    if ( net = ::/0 ) then accept;",
        "    if ( source = RTS_BGP ) then accept;",
        "    else reject;",
        "}",
        "",
        "filter cluster_access {",
        "    if ( net = 0.0.0.0/0 ) then reject;",
        "    if ( net = ::/0 ) then reject;",
        "    if ( source = RTS_STATIC && dest != RTD_BLACKHOLE ) then accept;",
        "    else reject;",
        "}",
        "",
    ]


def _templates(cfg: BirdConfig) -> list[str]:
    out: list[str] = []
    for fam in Family:
        body = ["debug { events, states, interfaces };", "direct;", f"hold time {cfg.hold_time_s};", "bfd off;",
                "graceful restart off;", "setkey off;", *cfg.timers.lines(),
                *_block(fam.channel, ["import none;", "export none;", "next hop self;"])]
        body[-1] = "};"
        out += _block(f"template bgp LINK{fam.suffix}", body) + [""]
    return out


def _vips(cfg: BirdConfig) -> list[str]:
    if not cfg.advertise_vips:
        return []
    out: list[str] = []
    for fam in cfg.families(cfg.vips):
        routes = [f'route {vip} via "lo";' for vip in cfg.vips if Family.of(vip) is fam]
        out += _block(f"protocol static VIP{fam.suffix}", [f"{fam.channel} {{ preference 110; }};", *routes]) + [""]
    return out


def _drop_or_vrrp(cfg: BirdConfig) -> list[str]:
    out: list[str] = []
    if cfg.vrrps:
        for i, ip in enumerate(cfg.vrrps, start=1):
            fam = Family.of(ip)
            out += _block(f"protocol static VRRP{fam.suffix}_{i}", [
                f"{fam.channel};", f"route {fam.default_route} via {ip}%'{cfg.interface}' onlink;"]) + [""]
        return out
    if not cfg.drop_if_no_peer:
        return []
    for fam in cfg.families(cfg.vips):
        s, ch = fam.suffix, fam.channel
        out += [f"{ch} table drop{s};", ""]
        out += _block(f"protocol kernel kernel_drop{s}", [
            f"{ch} {{ table drop{s}; import none; export all; }};", f"kernel table {cfg.table_id + 1};"]) + [""]
        out += _block(f"protocol static DROP{s}", [
            f"{ch} {{ table drop{s}; preference 0; }};",
            f"route {fam.default_route} blackhole {{ krt_metric={MAX_METRIC}; igp_metric={MAX_METRIC}; }};"]) + [""]
    return out


def _kernel(cfg: BirdConfig) -> list[str]:
    out: list[str] = []
    with_vips = set(cfg.families(cfg.vips))
    for fam in Family:
        export = "filter cluster_breakout" if fam in with_vips else "none"
        body = [f"{fam.channel} {{ import none; export {export}; }};", f"kernel table {cfg.table_id};",
                f"scan time {cfg.kernel_scan_time_s};"]
        if cfg.ecmp:
            body.append("merge paths on;")
        out += _block(f"protocol kernel kernel{fam.suffix}", body) + [""]
    return out


def _gateways(cfg: BirdConfig) -> list[str]:
    out: list[str] = []
    for gw in cfg.gateways:
        out += (_bgp(cfg, gw) if gw.protocol is GatewayProtocol.BGP else _static(cfg, gw)) + [""]
    return out


def _bgp(cfg: BirdConfig, gw: BirdGateway) -> list[str]:
    fam = gw.family
    body = [f'interface "{cfg.interface}";']
    if gw.password is not None:
        body.append(f'password "{gw.password}";')
    body += [f"local port {gw.local_port} as {gw.local_asn};",
             f"neighbor {gw.address} port {gw.remote_port} as {gw.remote_asn};"]
    if gw.bfd is not None:
        body += ["bfd {", *("    " + line for line in gw.bfd.lines()), "};"]
    if gw.hold_time_s:
        body.append(f"hold time {gw.hold_time_s};")
    imp = "none" if cfg.vrrps else "filter cluster_breakout"
    body.append(f"{fam.channel} {{ import {imp}; export filter cluster_access; }};")
    return _block(f"protocol bgp '{gw.protocol_name}' from LINK{fam.suffix}", body)


def _static(cfg: BirdConfig, gw: BirdGateway) -> list[str]:
    fam = gw.family
    imp = "none" if cfg.vrrps else "filter default_rt"
    bfd = " bfd" if gw.bfd is not None else ""
    return _block(f"protocol static '{gw.protocol_name}'", [
        f"{fam.channel} {{ import {imp}; }};",
        f"route {fam.default_route} via {gw.address}%'{cfg.interface}'{bfd};"])


def _bfd(cfg: BirdConfig) -> list[str]:
    if not any(gw.bfd is not None for gw in cfg.gateways):
        return []
    body = ["accept direct;"]
    static_bfd = [gw.bfd for gw in cfg.gateways if gw.protocol is GatewayProtocol.STATIC and gw.bfd is not None]
    if static_bfd:
        # BIRD holds one BFD option set per interface for static routes: like Meridio, the last one wins.
        body += [f'interface "{cfg.interface}" {{', *("    " + line for line in static_bfd[-1].lines()), "};"]
    return _block(f"protocol bfd '{BFD_PROTOCOL}'", body)


_GATEWAY_HEAD = re.compile(r"^protocol (?:bgp|static) '" + re.escape(NAME_PREFIX) + r"([^']+)'")


def gateway_at_line(text: str, line: int) -> str | None:
    """The gateway whose protocol block holds 1-based ``line`` of rendered ``text`` (BIRD's error position)."""
    current: str | None = None
    for number, content in enumerate(text.splitlines(), start=1):
        if head := _GATEWAY_HEAD.match(content):
            current = head.group(1)
        elif content == "}" and current is not None and number < line:
            current = None
        if number == line:
            return current
    return None
