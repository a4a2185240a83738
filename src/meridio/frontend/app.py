"""Frontend daemon (``meridio run frontend``): announces the attractor's VIPs to its gateways with BIRD.

Runs inside the FE+LB pod's network namespace. Watches the NSP (``WatchAttractor(Attractor{name,
trench})``), the collocated LB's ``StreamAvailabilityService`` on its unix socket and a directory of
MD5 secrets; runs BIRD as its child; registers a FRONTEND target while it has gateway connectivity.
Settings are ``NFE_*`` variables or flags, with Meridio's defaults. SIGTERM/SIGINT: withdraw (stop
BIRD), remove the VIP rules, unregister the FRONTEND target, exit 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import pathlib
import socket
from collections.abc import Coroutine
from typing import Any

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.bird import birdconf
from meridio.common import health as healthmod
from meridio.common import log as logmod
from meridio.common import settings as settingsmod
from meridio.common import tasks
from meridio.common import tls as tlsmod
from meridio.common.settings import setting
from meridio.frontend import desired, lbclient, secrets, service, viprules
from meridio.frontend import metrics as metricsmod
from meridio.kernel import netlink

__all__ = ["ENV_PREFIX", "Settings", "run", "serve", "options_from_settings"]

ENV_PREFIX = "NFE_"


@dataclasses.dataclass(frozen=True)
class Settings:
    nsp_service: str = setting("nsp-service:7778", "NSP address (host:port)")
    trench_name: str = setting("default", "trench of the attractor")
    attractor_name: str = setting("default", "attractor this frontend serves")
    external_interface: str = setting("ext-vlan", "interface towards the gateways")
    hostname: str = setting("", "identity in the NSP and towards the LB ('' = this host's name)")
    lb_socket: str = setting("unix:///var/lib/meridio/lb.sock", "the collocated LB's availability service")
    local_as: int = setting(8103, "local ASN where a gateway leaves local-asn at 0")
    remote_as: int = setting(4248829953, "remote ASN where a gateway leaves remote-asn at 0")
    bgp_local_port: int = setting(10179, "local BGP port where a gateway leaves local-port at 0")
    bgp_remote_port: int = setting(10179, "remote BGP port where a gateway leaves remote-port at 0")
    bgp_hold_time: int = setting(3, "BGP hold time of the templates, in seconds")
    table_id: int = setting(4096, "kernel table of the gateway routes (table_id+1: drop-if-no-peer)")
    ecmp: bool = setting(False, "merge equal routes into ECMP routes in the kernel table")
    drop_if_no_peer: bool = setting(True, "blackhole VIP-sourced egress when no gateway route exists")
    vrrps: tuple[str, ...] = setting((), "static default routes via these IPs instead of learned ones")
    log_bird: bool = setting(False, "copy all of BIRD's log into this log (else warnings and errors)")
    bird_log_file: str = setting("/var/log/bird.log", "BIRD's own log file, 20000 bytes + backup ('' = none)")
    bird_binary: str = setting("bird", "BIRD 2 executable")
    bird_run_dir: str = setting("/var/run/bird", "where bird.conf and the control socket bird.ctl live")
    router_id: str = setting("", "BGP router id ('' = lowest IPv4 of the external interface, else a hash)")
    secrets_dir: str = setting("", "MD5 secrets as <dir>/<secret-name>/<key> files, watched ('' = none)")
    secrets_poll_interval: float = setting(1.0, "how often the secrets directory is checked", duration=True)
    nsp_entry_timeout: float = setting(30.0, "re-register the FRONTEND target this often", duration=True)
    monitor_interval: float = setting(1.0, "gateway check interval with connectivity", duration=True)
    monitor_interval_down: float = setting(3.0, "gateway check interval without connectivity", duration=True)
    max_session_errors: int = setting(5, "consecutive failed BIRD queries counted as connectivity loss")
    bgp_connect_retry_time: int = setting(0, "BIRD connect retry time, seconds (0 = BIRD's 120; tests: 1)")
    bgp_error_wait_time: tuple[str, ...] = setting((), "BIRD error wait time 'min,max' seconds ('' = 60,300)")
    bgp_connect_delay_time: int = setting(0, "BIRD connect delay time, seconds (0 = BIRD's 5; tests: 1)")
    health_address: str = setting("", "health server, e.g. unix:///tmp/health.sock ('' = none)")
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics (every IPv4 and IPv6 address)")
    metrics_port: int = setting(2224, "TCP port of /metrics (Meridio's frontend default: 2224)")
    log_level: str = setting("DEBUG", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)


def _interface_addresses(interface: str) -> list[birdconf.IPAddress]:
    with netlink.Netlink() as nl:
        if nl.link_index(interface) is None:
            return []
        return [ipaddress.ip_interface(a).ip for a in nl.addresses(interface)]


def _timers(s: Settings) -> birdconf.SessionTimers:
    wait = None
    if s.bgp_error_wait_time:
        low, high = (int(x) for x in s.bgp_error_wait_time)
        wait = (low, high)
    return birdconf.SessionTimers(connect_retry_s=s.bgp_connect_retry_time or None, error_wait_s=wait,
                                  connect_delay_s=s.bgp_connect_delay_time or None)


def options_from_settings(s: Settings, addresses: list[birdconf.IPAddress] | None = None) -> service.Options:
    """Raises ``ValueError`` naming the setting when one cannot be used."""
    hostname = s.hostname or socket.gethostname()
    try:
        router_id = (ipaddress.IPv4Address(s.router_id) if s.router_id else
                     birdconf.derive_router_id(hostname, addresses or []))
    except ValueError:
        raise ValueError(f"NFE_ROUTER_ID {s.router_id!r}: must be an IPv4 address") from None
    try:
        vrrps = tuple(ipaddress.ip_address(v) for v in s.vrrps)
    except ValueError as exc:
        raise ValueError(f"NFE_VRRPS: {exc}") from None
    if s.bgp_error_wait_time and len(s.bgp_error_wait_time) != 2:
        raise ValueError("NFE_BGP_ERROR_WAIT_TIME: must be 'min,max' in seconds")
    base = birdconf.BirdConfig(
        interface=s.external_interface, router_id=router_id, table_id=s.table_id, ecmp=s.ecmp,
        drop_if_no_peer=s.drop_if_no_peer, vrrps=vrrps, log_bird=s.log_bird, log_file=s.bird_log_file or None,
        hold_time_s=s.bgp_hold_time, timers=_timers(s))
    return service.Options(
        hostname=hostname, base=base, run_dir=pathlib.Path(s.bird_run_dir), bird_binary=s.bird_binary,
        defaults=desired.GatewayDefaults(s.local_as, s.remote_as, s.bgp_local_port, s.bgp_remote_port),
        monitor_interval_s=s.monitor_interval, monitor_interval_down_s=s.monitor_interval_down,
        max_session_errors=s.max_session_errors, refresh_interval_s=s.nsp_entry_timeout,
        detailed_checks=s.metrics_enabled)


def run(settings: Settings) -> int:
    log = logmod.setup("frontend", level=settings.log_level)
    log.info("frontendStarting", settings=settingsmod.describe(settings))
    try:
        opts = options_from_settings(settings, _interface_addresses(settings.external_interface))
    except ValueError as exc:
        log.critical("frontendStartFailed", error=str(exc), reason="invalidSetting")
        return 2
    return tasks.run_until_signalled(lambda stop: serve(settings, opts, stop, log=log))


async def _watch_attractor(nsp: NspClient, fe: service.Frontend, s: Settings, log: logmod.Logger) -> None:
    wanted = model.Attractor(s.attractor_name, model.Trench(s.trench_name))
    async for attractors in nsp.watch_attractors(wanted):
        mine = next((a for a in attractors if a.name == s.attractor_name), None)
        log.debug("attractorReceived", present=mine is not None)
        fe.set_attractor(mine)


async def _watch_lb(fe: service.Frontend, s: Settings, hostname: str, log: logmod.Logger,
                    tls: tlsmod.Tls | None) -> None:
    async for available in lbclient.watch_availability(s.lb_socket, hostname, log=log, tls=tls):
        fe.set_lb_available(available)


async def _watch_secrets(fe: service.Frontend, s: Settings, log: logmod.Logger) -> None:
    async for snapshot in secrets.watch_secrets(s.secrets_dir or None, s.secrets_poll_interval, log=log):
        fe.set_secrets(snapshot)


async def serve(s: Settings, opts: service.Options, stop: asyncio.Event, *, log: logmod.Logger = logmod.null) -> int:
    """Run the frontend until ``stop`` is set; returns the exit code."""
    log = log.bind(trench=s.trench_name, attractor=s.attractor_name)
    try:
        tls = tlsmod.from_settings(s.tls_dir, s.tls_insecure)
    except tlsmod.TlsError as exc:
        log.critical("frontendStartFailed", error=str(exc), reason="tlsUnusable")
        return 1
    hc = healthmod.Health({healthmod.READINESS: [healthmod.NSP_CLI, healthmod.EGRESS]}, log=log)
    if s.health_address:
        await hc.serve(s.health_address)
    nsp = NspClient(s.nsp_service, log=log, on_connectivity=lambda up: hc.set_serving(healthmod.NSP_CLI, up),
                    tls=tls)
    fm = metricsmod.FrontendMetrics(metricsmod.Identity(s.trench_name, s.attractor_name), s.external_interface,
                                    log=log) if s.metrics_enabled else None
    fe = service.Frontend(opts, rules=viprules.VipRules(opts.base.table_id, log=log), registry=nsp, health=hc,
                          observer=fm, log=log)
    endpoint = await fm.start(fe, s.metrics_port) if fm is not None else None
    watchers: list[Coroutine[Any, Any, Any]] = [
        tasks.guard(_watch_attractor(nsp, fe, s, log), "nspAttractorWatch", log),
        tasks.guard(_watch_lb(fe, s, opts.hostname, log, tls), "lbAvailabilityWatch", log),
        tasks.guard(_watch_secrets(fe, s, log), "secretsWatch", log),
    ]
    running = [asyncio.ensure_future(w) for w in watchers]
    log.info("frontendStarted", hostname=opts.hostname, routerId=str(opts.base.router_id))
    try:
        clean = await fe.run(stop)
    finally:
        for t in running:
            t.cancel()
        for t in running:
            with contextlib.suppress(BaseException):
                await t
        await nsp.close()
        await hc.stop()
        if endpoint is not None:
            await endpoint.close()
    log.info("frontendExited", clean=clean)
    return 0 if clean else 1
