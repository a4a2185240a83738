"""Proxy daemon (``meridio run proxy``): the conduit's forwarder on one node (reference §3.8).

Run it inside the proxy's own network namespace. It creates ``bridge0`` (addresses from IPAM child
``bridge``), links it to every LB replica that announces itself in NSP for this conduit, routes egress
``from <VIP>`` over all of them (table 1, multipath), and serves the link service for TAPAs on
``NSM_LINK_SOCKET`` (plus its credential socket ``<socket>.cred``): both owner-only (``0600``, or
``0660`` with ``NSM_SOCKET_GROUP``), callers' uids checked (root and ``NSM_SOCKET_UIDS``), and a link for
pod P only for a caller in P's network namespace when ``NSM_POD_NETNS`` says where that is. Settings are Meridio's ``NSM_*``
proxy environment (§6.1) plus ours. SIGTERM/SIGINT: stop serving and exit 0, leaving every link,
address and route in place for the next run. Bad settings exit 2; a kernel set-up failure exits 1.
Metrics (:mod:`meridio.proxy.metrics`): ``/metrics`` on ``NSM_METRICS_PORT`` when
``NSM_METRICS_ENABLED``; a port that cannot be used is logged and the proxy runs without metrics.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from meridio.api import conduitlinkclient, model
from meridio.api.nspclient import NspClient
from meridio.common import grpcutil, health, tasks
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.common import settings as settingsmod
from meridio.common import tls as tlsmod
from meridio.common.retry import PermanentError, TemporaryError
from meridio.common.settings import SettingsError, setting
from meridio.kernel import localsock
from meridio.proxy import addressing, credentials, dataplane, deadlines, plan, service
from meridio.proxy.context import Config, Context
from meridio.proxy.forwarder import Forwarder
from meridio.proxy.metrics import ProxyMetrics

__all__ = ["ENV_PREFIX", "Settings", "config_from", "link_socket_path", "nsp_address", "run", "serve"]

ENV_PREFIX = "NSM_"
T = TypeVar("T")
Timer = Callable[[str], AbstractContextManager[None]]
"""``timer(input)``: a context manager timing one apply of that input."""


@dataclasses.dataclass(frozen=True)
class Settings:
    conduit: str = setting("", "conduit this proxy forwards (required)")
    trench: str = setting("", "trench of the conduit (required)")
    host: str = setting("", "node name: selects the node subnet at IPAM (required)")
    namespace: str = setting("default", "Kubernetes namespace of the trench (used in the default NSP address)")
    ipam_service: str = setting("", "IPAM gRPC address, host:port or unix:PATH (default ipam-service-<trench>:7777)")
    nsp_service: str = setting("", "NSP gRPC address, host:port or unix:PATH (wins over the name and port)")
    nsp_service_name: str = setting("nsp-service", "NSP service name; address <name>-<trench>:<port>")
    nsp_service_port: int = setting(7778, "NSP service port")
    ip_family: str = setting("dualstack", "IP families of the trench", choices=("ipv4", "ipv6", "dualstack"))
    mtu: int = setting(1500, "MTU of bridge0 and of every link (>= 576 for IPv4 only, >= 1280 with IPv6)")
    ip_release_delay: float = setting(20.0, "delay before a disconnected target's addresses are released",
                                      duration=True)
    bridge_ip_renew_interval: float = setting(300.0, "how often every address is allocated again at IPAM",
                                              duration=True)
    link_socket: str = setting("/var/lib/meridio/{trench}/{conduit}/{node}/link.sock",
                               "unix socket of the link service; {trench}, {conduit}, {node} (= host) are filled in")
    socket_uids: str = setting("", "uids besides root (and this process's) that may use the link and credential "
                               "sockets, comma-separated (a peer under another uid also needs NSM_SOCKET_GROUP)")
    socket_group: str = setting("", "group of the link and credential sockets: they become 0660 instead of 0600 "
                                "('' = owner only)")
    pod_ip: str = setting("", "this pod's addresses on the pod network, comma-separated: LB replicas on other "
                          "nodes are linked with VXLAN tunnels from them ('' = veths only)")
    pod_netns: str = setting("", "path of pod {pod}'s network namespace, e.g. /run/netns/{pod}: a link for pod P "
                             "is given only to a caller in that namespace ('' = not checked)")
    link_orphan_timeout: float = setting(30.0, "a target link whose owner process died is removed after this "
                                         "time unless it is connected again", duration=True)
    check_interval: float = setting(1.0, "how often links, owners and pending releases are checked",
                                    duration=True)
    health_address: str = setting("", "extra grpc.health.v1 listener, e.g. unix:///tmp/health.sock")
    log_level: str = setting("INFO", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics (every IPv4 and IPv6 address)")
    metrics_port: int = setting(2227, "TCP port of /metrics")


def config_from(s: Settings) -> Config:
    """Validate the settings into the proxy's :class:`Config`; :class:`SettingsError` names the variable."""
    for field in ("conduit", "trench", "host"):
        if not getattr(s, field).strip():
            raise SettingsError(f"{ENV_PREFIX}{field.upper()}: required")
    fams = plan.families(s.ip_family)
    minimum = 1280 if 6 in fams else 576
    if not minimum <= s.mtu <= 65535:
        raise SettingsError(f"{ENV_PREFIX}MTU={s.mtu}: must be between {minimum} and 65535 for {s.ip_family}")
    for field in ("ip_release_delay", "link_orphan_timeout"):
        if getattr(s, field) < 0:
            raise SettingsError(f"{ENV_PREFIX}{field.upper()}: must not be negative")
    for field in ("bridge_ip_renew_interval", "check_interval"):
        if getattr(s, field) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{field.upper()}: must be positive")
    socket_access(s)
    if s.pod_netns:
        try:
            s.pod_netns.format(pod="p")
        except (KeyError, IndexError, ValueError):
            raise SettingsError(f"{ENV_PREFIX}POD_NETNS {s.pod_netns[:64]!r}: only {{pod}} may be used") from None
        if "{pod}" not in s.pod_netns or not s.pod_netns.startswith("/"):
            raise SettingsError(f"{ENV_PREFIX}POD_NETNS {s.pod_netns[:64]!r}: must be an absolute path with {{pod}}")
    pod_ips = []
    for text in (a.strip() for a in s.pod_ip.split(",") if a.strip()):
        try:
            pod_ips.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}POD_IP: {text[:64]!r} is not an IP address") from None
    return Config(s.trench, s.conduit, s.host, fams, s.mtu, s.ip_release_delay, s.link_orphan_timeout,
                  tuple(pod_ips), s.pod_netns)


def socket_access(s: Settings) -> localsock.Access:
    return localsock.access_from(s.socket_uids, s.socket_group, prefix=ENV_PREFIX)


def link_socket_path(s: Settings) -> str:
    path = s.link_socket.format(trench=s.trench, conduit=s.conduit, host=s.host, node=s.host)
    return grpcutil.unix_path(path) or path


def nsp_address(s: Settings) -> str:
    return s.nsp_service or f"{s.nsp_service_name}-{s.trench}:{s.nsp_service_port}"


def ipam_address(s: Settings) -> str:
    return s.ipam_service or f"ipam-service-{s.trench}:7777"


def run(settings: Settings) -> int:
    log = logmod.setup("proxy", level=settings.log_level)
    try:
        config_from(settings)
    except (SettingsError, ValueError) as exc:
        log.critical("proxyBadSettings", error=str(exc))
        return 2
    log.info("proxyStarting", settings=settingsmod.describe(settings))
    return tasks.run_until_signalled(lambda stop: serve(settings, stop, log=log))


async def _follow(source: AsyncIterator[T], apply: Callable[[T], Awaitable[None]], what: str,
                  log: logmod.Logger, timer: Timer) -> None:
    """Apply every list a watch sends; a failed apply is logged and retried by the next list or tick."""
    async for item in source:
        try:
            with timer(what):
                await apply(item)
        except (TemporaryError, dataplane.KernelError) as exc:
            log.warning("applyFailed", input=what, error=str(exc))


async def _every(interval: float, fn: Callable[[], Awaitable[None]], what: str, log: logmod.Logger,
                 timer: Timer) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            with timer(what):
                await fn()
        except (TemporaryError, PermanentError, dataplane.KernelError) as exc:
            log.warning("periodicFailed", task=what, error=str(exc))


def _watches(s: Settings, nsp: NspClient, fwd: Forwarder, log: logmod.Logger,
             t: Timer) -> list[Coroutine[Any, Any, Any]]:
    conduit = model.Conduit(s.conduit, model.Trench(s.trench))
    lb_filter = model.Target.make(type=model.TargetType.LOADBALANCER, status=model.TargetStatus.ENABLED,
                                  stream=model.Stream("", conduit))
    return [
        tasks.guard(_follow(nsp.watch_targets(lb_filter), fwd.set_lb_targets, "lbTargets", log, t), "watchLb", log),
        tasks.guard(_follow(nsp.watch_vips(model.Vip("", "", model.Trench(s.trench))), fwd.set_vips, "vips", log, t),
                    "watchVips", log),
        tasks.guard(_follow(nsp.watch_flows(model.Flow("", stream=model.Stream("", conduit))), fwd.set_flows,
                            "flows", log, t), "watchFlows", log),
        tasks.guard(_every(s.check_interval, fwd.tick, "check", log, t), "check", log),
        tasks.guard(_every(s.bridge_ip_renew_interval, fwd.renew, "renew", log, t), "renew", log),
    ]


class _LbLinks:
    """The LB replicas' ConduitLink services, with this proxy's TLS."""

    def __init__(self, tls: tlsmod.Tls | None) -> None:
        self._tls = tls

    async def connect(self, host: str, port: int, args: conduitlinkclient.ConnectArgs) -> conduitlinkclient.Reply:
        return await conduitlinkclient.connect(host, port, args, tls=self._tls)

    async def disconnect(self, host: str, port: int, *, trench: str, conduit: str, node: str) -> None:
        await conduitlinkclient.disconnect(host, port, trench=trench, conduit=conduit, node=node, tls=self._tls)


async def serve(s: Settings, stop: asyncio.Event, *, log: logmod.Logger = logmod.null) -> int:
    """Run the proxy until ``stop`` is set; returns the exit code."""
    cfg = config_from(s)
    log = log.bind(trench=cfg.trench, conduit=cfg.conduit, node=cfg.node)
    try:
        tls = tlsmod.from_settings(s.tls_dir, s.tls_insecure)
    except tlsmod.TlsError as exc:
        log.critical("proxyStartFailed", error=str(exc), reason="tlsUnusable")
        return 1
    dp = dataplane.Dataplane(mtu=cfg.mtu, families=cfg.families)
    ipam = addressing.Ipam(ipam_address(s), trench=cfg.trench, conduit=cfg.conduit, node=cfg.node,
                           families=cfg.families, tls=tls)
    fwd = Forwarder(Context(cfg, dp, ipam, deadlines.Deadlines(cfg.release_delay), time.monotonic, log,
                            lb_links=_LbLinks(tls) if cfg.pod_ips else None))
    try:
        await fwd.start()
    except dataplane.KernelError as exc:
        log.critical("proxyStartFailed", error=str(exc))
        dp.close()
        return 1
    sock = link_socket_path(s)
    access = socket_access(s)
    guard = localsock.GuardedListener(sock, access, log=log)
    creds = credentials.CredentialServer(credentials.credential_path(sock), monotonic=time.monotonic,
                                         access=access, log=log)
    hc = health.Health({health.READINESS: [health.EGRESS], health.LIVENESS: [health.NSP_CLI]}, log=log)
    nsp = NspClient(nsp_address(s), log=log, on_connectivity=lambda up: hc.set_serving(health.NSP_CLI, up),
                    tls=tls)
    server = grpcutil.create_server()
    service.add_to_server(server, service.LinkServicer(fwd, creds, log=log, identities=tls is not None,
                                                               node=s.host))
    hc.add_to(server)
    try:
        await creds.start()
        guard.prepare()
        with localsock.private_umask():
            grpcutil.add_listener(server, f"unix:{guard.backend}", tls=tls, log=log)
        await server.start()
        await guard.start()
        if s.health_address:
            await hc.serve(s.health_address)
    except (OSError, grpcutil.ListenError) as exc:
        log.critical("proxyStartFailed", error=str(exc))
        await _shutdown(server, creds, nsp, ipam, fwd, dp, hc, guard)
        return 1
    log.info("linkServiceStarted", socket=sock)
    pm = ProxyMetrics(fwd, trench=cfg.trench, conduit=cfg.conduit, bridge=dp.bridge, read_stats=dp.interface_stats,
                      log=log)
    endpoint = await metricsmod.serve_or_log(pm.metrics, s.metrics_port, log) if s.metrics_enabled else None
    code = await _run_until(stop, _watches(s, nsp, fwd, log, pm.timed), fwd, hc)
    if endpoint is not None:
        await endpoint.close()
    await _shutdown(server, creds, nsp, ipam, fwd, dp, hc, guard)
    log.info("proxyStopped", exitCode=code)
    return code


async def _run_until(stop: asyncio.Event, loops: list[Coroutine[Any, Any, Any]], fwd: Forwarder,
                     hc: health.Health) -> int:
    running = [asyncio.ensure_future(c) for c in loops]

    async def readiness() -> None:
        while True:
            hc.set_serving(health.EGRESS, fwd.ready)
            await asyncio.sleep(0.5)

    running.append(asyncio.ensure_future(readiness()))
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
    for t in [stopped, *running]:
        t.cancel()
    for t in running:
        with contextlib.suppress(BaseException):
            await t
    return 0 if stopped in done else 1


async def _shutdown(server: Any, creds: credentials.CredentialServer, nsp: NspClient, ipam: addressing.Ipam,
                    fwd: Forwarder, dp: dataplane.Dataplane, hc: health.Health,
                    guard: localsock.GuardedListener) -> None:
    hc.shutdown()
    await guard.close()
    await server.stop(1.0)
    await creds.close()
    await nsp.close()
    await ipam.close()
    fwd.close()
    dp.close()
    with contextlib.suppress(Exception):
        await hc.stop(0.5)
