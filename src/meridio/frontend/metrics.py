"""The frontend's Prometheus metrics (``NFE_METRICS_ENABLED``, ``/metrics`` on ``NFE_METRICS_PORT``, 2224).

Every family is built from state the frontend already keeps: the monitor loop's last look at BIRD (it
polls ``show protocols all`` and ``show bfd sessions`` every second and on each BIRD session notice; the
scrape never queries BIRD), the configuration BIRD runs and the tracker's connectivity. Only the
external interface's counters are read at scrape time, one netlink dump off the event loop.

- :func:`sessions_from_bird` and :class:`SessionBook` (pure): per-gateway BGP/BFD state and route
  counts from BIRD's replies, with up→down transitions counted once each;
- :func:`session_families`, :func:`frontend_families` (pure): the metric families;
- :class:`FrontendMetrics`: the :class:`~meridio.frontend.service.Observer` the frontend reports to,
  the BIRD apply instruments, and :meth:`FrontendMetrics.start`, which :mod:`meridio.frontend.app` calls.

Labels: ``trench``, ``attractor``, ``gateway`` (the gateway's name, never its address), ``kind`` of route
count and ``result`` of an apply. Meridio's ``meridio.attractor.gateway.{imported,exported,preferred}.routes``
are ``meridio_frontend_gateway_routes{kind=...}`` here.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

from meridio.bird import birdc
from meridio.bird.birdconf import BirdConfig, BirdGateway, GatewayProtocol
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.frontend import service
from meridio.kernel import netlink

__all__ = ["Identity", "FrontendState", "GatewaySessions", "sessions_from_bird", "SessionBook", "session_families",
           "frontend_families", "FrontendMetrics", "ROUTE_KINDS"]

ROUTE_KINDS = ("imported", "exported", "preferred")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Whose metrics these are: the labels every frontend family starts with."""

    trench: str
    attractor: str

    @property
    def values(self) -> tuple[str, str]:
        return (self.trench, self.attractor)


_LABELS = ("trench", "attractor")
_GATEWAY_LABELS = (*_LABELS, "gateway")


@dataclasses.dataclass(frozen=True)
class GatewaySessions:
    """What BIRD last said of one configured gateway."""

    bgp_up: bool | None
    """The BGP protocol is up and Established; ``None`` for a static gateway (no BGP session)."""
    bfd_up: bool | None
    """BIRD's BFD session to the gateway on the external interface is Up; ``None`` without BFD."""
    routes: birdc.RouteCounts = birdc.RouteCounts()
    """The protocol's route counts (``show protocols all``); zero when BIRD did not report them."""

    def down(self) -> GatewaySessions:
        """The same gateway with nothing up and no routes (BIRD gone or not answering)."""
        return GatewaySessions(None if self.bgp_up is None else False, None if self.bfd_up is None else False)


def sessions_from_bird(gateways: Sequence[BirdGateway], protocols: Sequence[birdc.ProtocolInfo],
                       bfd_sessions: Sequence[birdc.BfdSession], interface: str) -> dict[str, GatewaySessions]:
    """The sessions of each configured gateway (by name) from one ``show protocols [all]`` and
    ``show bfd sessions``; a gateway BIRD does not list is down."""
    by_name = {p.name: p for p in protocols}
    out: dict[str, GatewaySessions] = {}
    for gw in gateways:
        proto = by_name.get(gw.protocol_name)
        bgp_up = None
        if gw.protocol is GatewayProtocol.BGP:
            bgp_up = proto is not None and proto.state == "up" and "Established" in proto.info
        bfd_up = None
        if gw.bfd is not None:
            bfd_up = any(s.address == str(gw.address) and s.interface == interface and s.state == "Up"
                         for s in bfd_sessions)
        routes = proto.routes if proto is not None and proto.routes is not None else birdc.RouteCounts()
        out[gw.name] = GatewaySessions(bgp_up, bfd_up, routes)
    return out


class SessionBook:
    """The last sessions seen and the flaps: each up→down transition of a session, counted once.

    A gateway's first sight, down→down and down→up count nothing. A gateway leaving the configuration
    takes its series (and its flap counts) with it; Prometheus reads a reappearing counter as a reset.
    """

    def __init__(self) -> None:
        self.current: dict[str, GatewaySessions] = {}
        self.bgp_flaps: collections.Counter[str] = collections.Counter()
        self.bfd_flaps: collections.Counter[str] = collections.Counter()

    def observe(self, sessions: Mapping[str, GatewaySessions]) -> None:
        for name, now in sessions.items():
            before = self.current.get(name)
            if before is None:
                continue
            if before.bgp_up and now.bgp_up is False:
                self.bgp_flaps[name] += 1
            if before.bfd_up and now.bfd_up is False:
                self.bfd_flaps[name] += 1
        self.current = dict(sessions)
        for flaps in (self.bgp_flaps, self.bfd_flaps):
            for name in [n for n in flaps if n not in self.current]:
                del flaps[name]

    def lost(self) -> None:
        """BIRD restarted, died or stopped answering: every session counts as down."""
        self.observe({name: s.down() for name, s in self.current.items()})


def session_families(who: Identity, book: SessionBook) -> list[metricsmod.Family]:
    """The per-gateway families: BGP and BFD session state and flaps, route counts."""
    def per_gateway(pick: str) -> list[tuple[tuple[str, ...], float]]:
        return [((*who.values, name), float(getattr(s, pick))) for name, s in sorted(book.current.items())
                if getattr(s, pick) is not None]

    def flaps(counts: collections.Counter[str], pick: str) -> list[tuple[tuple[str, ...], float]]:
        return [((*who.values, name), float(counts[name])) for name, s in sorted(book.current.items())
                if getattr(s, pick) is not None]

    routes = [((*who.values, name, kind), float(getattr(s.routes, kind)))
              for name, s in sorted(book.current.items()) for kind in ROUTE_KINDS]
    return [
        metricsmod.gauge("frontend_bgp_session_up", "BGP session with the gateway Established (1) or not (0)",
                         _GATEWAY_LABELS, per_gateway("bgp_up")),
        metricsmod.counter("frontend_bgp_session_flaps", "BGP session transitions from up to down seen by the "
                           "frontend", _GATEWAY_LABELS, flaps(book.bgp_flaps, "bgp_up")),
        metricsmod.gauge("frontend_bfd_session_up", "BFD session with the gateway Up (1) or not (0); gateways "
                         "with BFD only", _GATEWAY_LABELS, per_gateway("bfd_up")),
        metricsmod.counter("frontend_bfd_session_flaps", "BFD session transitions from Up to down seen by the "
                           "frontend", _GATEWAY_LABELS, flaps(book.bfd_flaps, "bfd_up")),
        metricsmod.gauge("frontend_gateway_routes", "Routes of the gateway's BIRD protocol by kind (imported, "
                         "exported, preferred), as BIRD counts them", (*_GATEWAY_LABELS, "kind"), routes),
    ]


def frontend_families(who: Identity, *, announced_vips: int, connectivity: bool) -> list[metricsmod.Family]:
    """The frontend-wide families: VIPs announced now, gateway connectivity."""
    return [
        metricsmod.gauge("frontend_announced_vips", "VIPs the frontend announces to its gateways now (0 while "
                         "it withdraws them)", _LABELS, [(who.values, float(announced_vips))]),
        metricsmod.gauge("frontend_gateway_connectivity", "Frontend has gateway connectivity: at least one "
                         "gateway up in every IP family that has gateways (1) or not (0)", _LABELS,
                         [(who.values, float(connectivity))]),
    ]


class FrontendState(Protocol):
    """What the families read of :class:`~meridio.frontend.service.Frontend`."""

    @property
    def applied(self) -> BirdConfig: ...

    @property
    def announced(self) -> bool: ...

    @property
    def connectivity(self) -> bool: ...


def _interface_stats(interface: str) -> list[netlink.InterfaceStats]:
    with netlink.Netlink() as nl:
        return [st for st in nl.interface_stats() if st.name == interface]


class FrontendMetrics:
    """The frontend's metrics: the observer it reports to, its instruments, and the ``/metrics`` endpoint."""

    def __init__(self, who: Identity, interface: str, *, log: logmod.Logger = logmod.null) -> None:
        self.who = who
        self.interface = interface
        self.log = log
        self.metrics = metricsmod.Metrics()
        self.book = SessionBook()
        # trench and attractor on the instruments too, so a dashboard's trench filter selects them.
        self.apply_duration = self.metrics.histogram(
            "frontend_bird_apply_duration_seconds", "Time of one BIRD configure (new bird.conf), in seconds",
            _LABELS).labels(*who.values)
        self.applies = self.metrics.counter("frontend_bird_applies", "BIRD configures by result (ok: "
                                            "applied, refused: BIRD refused the file, failed: BIRD unreachable)",
                                            [*_LABELS, "result"])
        for result in service.ApplyResult:
            self.applies.labels(*who.values, result.value)
        self._interfaces: list[netlink.InterfaceStats] = []

    # --- service.Observer ----------------------------------------------------------------------

    def gateways_seen(self, gateways: Sequence[BirdGateway], protocols: Sequence[birdc.ProtocolInfo],
                      sessions: Sequence[birdc.BfdSession]) -> None:
        self.book.observe(sessions_from_bird(gateways, protocols, sessions, self.interface))

    def gateways_lost(self) -> None:
        self.book.lost()

    def bird_applied(self, result: service.ApplyResult, seconds: float) -> None:
        self.apply_duration.observe(seconds)
        self.applies.labels(*self.who.values, result.value).inc()

    # --- the endpoint ----------------------------------------------------------------------------

    def families(self, fe: FrontendState) -> list[metricsmod.Family]:
        """Everything a scrape returns besides the instruments (the interface counters as last refreshed)."""
        announced = len(fe.applied.vips) if fe.announced else 0
        return [*session_families(self.who, self.book),
                *frontend_families(self.who, announced_vips=announced, connectivity=fe.connectivity),
                *metricsmod.interface_families(self._interfaces, _LABELS,
                                               self.who.values)]

    async def refresh_interfaces(self) -> None:
        """Read the external interface's counters (one netlink dump, off the loop)."""
        try:
            self._interfaces = await asyncio.to_thread(_interface_stats, self.interface)
        except (OSError, netlink.NetlinkError) as exc:
            self._interfaces = []
            self.log.debug("interfaceStatsFailed", interface=self.interface, error=str(exc))

    async def start(self, fe: FrontendState, port: int, host: str | None = None) -> metricsmod.Endpoint | None:
        """Serve ``/metrics`` (``host`` None: every IPv4 and IPv6 address); a port that cannot be bound
        is logged and gives ``None`` (the frontend keeps running without metrics)."""
        self.metrics.collect(lambda: self.families(fe), refresh=self.refresh_interfaces)
        return await metricsmod.serve_or_log(self.metrics, port, self.log, host)
