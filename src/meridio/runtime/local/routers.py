"""The emulated gateway routers: their BIRD configuration and process (pure, plus a process spec).

A router runs BIRD in its namespace, configured by :mod:`meridio.bird.gatewayconf` the way
Meridio's e2e gateways are: dynamic BGP neighbours on the segment's subnets (any FE replica may peer),
passive BFD, a default route announced to the FEs, the learned VIPs installed in the kernel with ECMP
over the FE replicas. A ``static`` router instead routes its configured VIPs to every FE on the segment
(BFD-supervised); those next hops change with the FE replicas, so the config is re-rendered then.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from meridio.bird import birdconf, gatewayconf
from meridio.kernel import bird
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import topology
from meridio.runtime.local.layout import Naming, StateLayout
from meridio.runtime.local.supervisor import ProcessSpec

__all__ = ["POD_PREFIX", "bird_config_path", "bird_socket", "process_spec", "reconfigure", "render", "router_config"]

POD_PREFIX = "router-"
"""Routers appear in process listings as pod ``router-<name>``."""

_TIMERS = birdconf.SessionTimers(connect_retry_s=1, error_wait_s=(1, 2), connect_delay_s=1)
"""Reconnect fast after a FE comes back (a user's router would be tuned alike for a lab)."""


def router_config(env: envmod.Environment, router: envmod.Router, *,
                  frontends: Sequence[str] = ()) -> gatewayconf.GatewayRouterConfig:
    """The BIRD configuration of ``router``; ``frontends`` = the FE addresses on its segment (static mode)."""
    net = env.network(router.network)
    assert net is not None
    ranges = tuple(n for n, a in ((net.ipv4, router.ipv4), (net.ipv6, router.ipv6)) if n is not None and a is not None)
    router_id = router.ipv4 or birdconf.derive_router_id(router.name, [a for a in (router.ipv6,) if a])
    if router.bgp is not None:
        bgp = router.bgp
        return gatewayconf.GatewayRouterConfig(
            interface=topology.ROUTER_EXT, router_id=router_id, peer_ranges=ranges, asn=router.asn,
            peer_asn=bgp.peer_asn, port=bgp.port, peer_port=bgp.port, hold_time_s=bgp.hold_time_s,
            bfd=_bfd(bgp.bfd), password=bgp.password, timers=_TIMERS)
    static = router.static
    assert static is not None
    return gatewayconf.GatewayRouterConfig(
        interface=topology.ROUTER_EXT, router_id=router_id, announce_default=False, bfd=_bfd(static.bfd),
        static_routes=_static_routes(static, frontends), timers=_TIMERS)


def _bfd(bfd: envmod.Bfd | None) -> birdconf.Bfd | None:
    return None if bfd is None else birdconf.Bfd(bfd.min_rx_ms, bfd.min_tx_ms, bfd.multiplier)


def _static_routes(static: envmod.Static, frontends: Sequence[str]) -> tuple[gatewayconf.StaticRoute, ...]:
    hops = [ipaddress.ip_interface(a).ip for a in frontends]
    out = []
    for vip in static.vips:
        prefix = ipaddress.ip_network(vip)
        via = tuple(sorted((h for h in hops if h.version == prefix.version), key=str))
        if via:
            out.append(gatewayconf.StaticRoute(prefix, via, bfd=static.bfd is not None))
    return tuple(out)


def render(env: envmod.Environment, router: envmod.Router, *, frontends: Sequence[str] = ()) -> str:
    return gatewayconf.render(router_config(env, router, frontends=frontends))


def bird_config_path(layout: StateLayout, router: envmod.Router) -> str:
    return str(layout.router_dir(router.name) / "bird.conf")


def bird_socket(layout: StateLayout, router: envmod.Router) -> str:
    return str(layout.router_dir(router.name) / "bird.ctl")


def process_spec(layout: StateLayout, naming: Naming, router: envmod.Router,
                 extra_env: Mapping[str, str] | None = None) -> ProcessSpec:
    pod = POD_PREFIX + router.name
    return ProcessSpec(pod=pod, component="bird", netns=naming.router_ns(router.name),
                       argv=("bird", "-f", "-c", bird_config_path(layout, router), "-s", bird_socket(layout, router)),
                       log_path=layout.log(pod, "bird"), env=dict(extra_env or {}), stop_timeout_s=5.0)


async def reconfigure(layout: StateLayout, router: envmod.Router) -> None:
    """Ask the router's BIRD to reload its (re-rendered) configuration; BIRD keeps untouched sessions."""
    control = await bird.connect(bird_socket(layout, router))
    try:
        await control.configure(bird_config_path(layout, router))
    finally:
        await control.close()
