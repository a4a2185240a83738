"""Render bird.conf for an *external gateway router* facing Meridio frontends (pure).

Not part of the product a user deploys: the user owns the gateways. It is what the local runtime's
emulated gateway routers and the frontend's BIRD-vs-BIRD tests run, configured the way Meridio's e2e
environment configures its gateways:

- dynamic BGP neighbours (``neighbor range``): any FE replica in the external subnet may peer, so
  scaling the attractor needs no gateway change; one protocol per IP family;
- passive BFD on the external interface (the FEs start the sessions), BGP sessions with ``bfd on``;
- a default route announced to the FEs (a blackhole in BIRD's table only: the FE routes VIP-sourced
  egress to the gateway, the gateway forwards with its own kernel routes);
- the VIPs learned from the FEs imported into the kernel with ``merge paths on`` (ECMP over FE replicas);
- optional static VIP routes via FEs (for FEs whose gateway protocol is ``static``), BFD-supervised.
"""
from __future__ import annotations

import dataclasses
import ipaddress

from meridio.bird.birdconf import Bfd, Family, IPAddress, IPNetwork, SessionTimers, check_password

__all__ = ["StaticRoute", "GatewayRouterConfig", "render", "peer_protocol_name"]


@dataclasses.dataclass(frozen=True)
class StaticRoute:
    """``route <prefix> via <nexthop> [bfd] via ...``: a VIP routed to static-mode FEs."""

    prefix: IPNetwork
    via: tuple[IPAddress, ...]
    bfd: bool = True


@dataclasses.dataclass(frozen=True)
class GatewayRouterConfig:
    interface: str
    """The gateway's interface on the external segment shared with the FEs."""
    router_id: ipaddress.IPv4Address
    peer_ranges: tuple[IPNetwork, ...] = ()
    """Where FEs may connect from (one dynamic BGP protocol per range)."""
    asn: int = 4248829953
    peer_asn: int = 8103
    port: int = 10179
    """Port the gateway listens on (the FE's ``remote-port``)."""
    peer_port: int = 10179
    hold_time_s: int = 3
    bfd: Bfd | None = None
    """BFD timers of the gateway's side; ``None``: no BFD."""
    password: str | None = None
    announce_default: bool = True
    ecmp: bool = True
    kernel_table: int | None = None
    """Kernel table the learned VIPs go to; ``None``: main."""
    static_routes: tuple[StaticRoute, ...] = ()
    log_file: str | None = None
    log_stderr_all: bool = False
    timers: SessionTimers = SessionTimers()

    def __post_init__(self) -> None:
        if self.password is not None:
            check_password(self.password)


def peer_protocol_name(family: Family, index: int = 0) -> str:
    """Name of the dynamic BGP protocol for the ``index``-th peer range of ``family`` (``FE4``, ``FE4_2``)."""
    return f"FE{family.suffix}" + (f"_{index + 1}" if index else "")


def render(cfg: GatewayRouterConfig) -> str:
    sections = [_header(cfg), _kernel(cfg), _defaults(cfg), _static_routes(cfg), _peers(cfg), _bfd(cfg)]
    return "\n".join(line for section in sections for line in section) + "\n"


def _header(cfg: GatewayRouterConfig) -> list[str]:
    out = []
    if cfg.log_file:
        out.append(f'log "{cfg.log_file}" all;')
    out.append("log stderr all;" if cfg.log_stderr_all else "log stderr { error, fatal, bug, warning };")
    return out + [f"router id {cfg.router_id};", "", "protocol device {", "}", "",
                  "filter fe_import {", "    if ( net = 0.0.0.0/0 || net = ::/0 ) then reject;", "    accept;", "}", ""]


def _families(cfg: GatewayRouterConfig) -> list[Family]:
    present = {Family.of(p) for p in cfg.peer_ranges} | {Family.of(r.prefix) for r in cfg.static_routes}
    return [f for f in Family if f in present]


def _kernel(cfg: GatewayRouterConfig) -> list[str]:
    out: list[str] = []
    for fam in _families(cfg):
        body = [f"{fam.channel} {{ import none; export where dest != RTD_BLACKHOLE; }};"]
        if cfg.kernel_table is not None:
            body.append(f"kernel table {cfg.kernel_table};")
        if cfg.ecmp:
            body.append("merge paths on;")
        out += [f"protocol kernel kernel{fam.suffix} {{", *("    " + b for b in body), "}", ""]
    return out


def _defaults(cfg: GatewayRouterConfig) -> list[str]:
    if not cfg.announce_default:
        return []
    out: list[str] = []
    peered = {Family.of(p) for p in cfg.peer_ranges}
    for fam in (f for f in Family if f in peered):
        out += [f"protocol static DEFAULT{fam.suffix} {{", f"    {fam.channel};",
                f"    route {fam.default_route} blackhole;", "}", ""]
    return out


def _static_routes(cfg: GatewayRouterConfig) -> list[str]:
    out: list[str] = []
    for fam in _families(cfg):
        routes = [r for r in cfg.static_routes if Family.of(r.prefix) is fam]
        if not routes:
            continue
        lines = []
        for r in routes:
            hops = " ".join(f"via {hop}" + (" bfd" if r.bfd else "") for hop in r.via)
            lines.append(f"    route {r.prefix} {hops};")
        out += [f"protocol static VIPS{fam.suffix} {{", f"    {fam.channel};", *lines, "}", ""]
    return out


def _peers(cfg: GatewayRouterConfig) -> list[str]:
    out: list[str] = []
    seen: dict[Family, int] = {}
    for rng in cfg.peer_ranges:
        fam = Family.of(rng)
        index = seen.get(fam, 0)
        seen[fam] = index + 1
        name = peer_protocol_name(fam, index)
        body = ["debug { events, states };", f'interface "{cfg.interface}";', "direct;",
                f"local port {cfg.port} as {cfg.asn};",
                f"neighbor range {rng} port {cfg.peer_port} as {cfg.peer_asn};", f'dynamic name "{name}_";',
                f"hold time {cfg.hold_time_s};", *cfg.timers.lines()]
        if cfg.password is not None:
            body.append(f'password "{cfg.password}";')
        if cfg.bfd is not None:
            body.append("bfd on;")
        export = f"where net = {fam.default_route}" if cfg.announce_default else "none"
        body.append(f"{fam.channel} {{ import filter fe_import; export {export}; }};")
        out += [f"protocol bgp {name} {{", *("    " + b for b in body), "}", ""]
    return out


def _bfd(cfg: GatewayRouterConfig) -> list[str]:
    if cfg.bfd is None:
        return []
    opts = [*cfg.bfd.lines(), "passive on;"]
    return ["protocol bfd {", f'    interface "{cfg.interface}" {{', *("        " + o for o in opts), "    };", "}", ""]
