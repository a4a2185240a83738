"""IPAM daemon (``meridio run ipam``): hands out conduit, node and address prefixes for one trench.

Serves ``ipam.v1.Ipam`` and ``grpc.health.v1`` on ``IPAM_PORT``; conduit prefixes follow the NSP at
``IPAM_NSP_SERVICE``; allocations are kept in sqlite at ``IPAM_DATASOURCE``. Settings mirror Meridio's
``cmd/ipam`` environment (reference §6.1); defaults are the operator's values. SIGTERM/SIGINT stop it
cleanly (exit status 0). Start-up failures (bad settings, unusable registry file) print one line on
stderr and exit with status 2 (settings) or 1 (registry). Metrics (:mod:`meridio.ipam.metrics`):
``/metrics`` on ``IPAM_METRICS_PORT`` when ``IPAM_METRICS_ENABLED``; a port that cannot be used is logged
and the IPAM runs without metrics.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import sys

from meridio.api import nspclient
from meridio.api.pb.ipam.v1 import ipam_pb2_grpc
from meridio.common import grpcutil
from meridio.common import health as healthmod
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.common import settings as settingsmod
from meridio.common import tls as tlsmod
from meridio.common.settings import SettingsError, setting
from meridio.common.tasks import guard, run_until_signalled
from meridio.ipam import authz, conduits, tree
from meridio.ipam.metrics import IpamMetrics
from meridio.ipam.registry import Registry, collect_garbage_forever, release_departed_forever
from meridio.ipam.servicer import IpamServicer
from meridio.ipam.store import IpamStoreError, Store

__all__ = ["ENV_PREFIX", "Settings", "layouts_from", "run", "serve"]

ENV_PREFIX = "IPAM_"
IP_FAMILIES = ("dualstack", "ipv4", "ipv6")


@dataclasses.dataclass(frozen=True)
class Settings:
    port: int = setting(7777, "TCP port of the Ipam and health gRPC services (0: any free port)")
    listen_address: str = setting("[::]", "address to listen on ([::] = every address, IPv4 too; or unix:PATH)")
    trench_name: str = setting("", "name of the trench this IPAM serves (required)")
    nsp_service: str = setting("", "NSP address, host:port (required), e.g. nsp-service-trench-a:7778")
    prefix_ipv4: str = setting("172.16.0.0/16", "trench IPv4 prefix")
    prefix_ipv6: str = setting("fd00::/48", "trench IPv6 prefix")
    conduit_prefix_length_ipv4: int = setting(20, "IPv4 prefix length of a conduit")
    conduit_prefix_length_ipv6: int = setting(56, "IPv6 prefix length of a conduit")
    node_prefix_length_ipv4: int = setting(24, "IPv4 prefix length of a node (proxy) in a conduit")
    node_prefix_length_ipv6: int = setting(64, "IPv6 prefix length of a node (proxy) in a conduit")
    ip_family: str = setting("dualstack", "families served", choices=IP_FAMILIES)
    nodes: tuple[str, ...] = setting((), "the nodes that may get prefixes, comma-separated (empty: any node); "
                                         "the operator or local runtime lists the cluster's nodes")
    datasource: str = setting("/run/ipam/data/registry.db", "sqlite file of the allocations")
    garbage_collection_enabled: bool = setting(True, "remove idle node and address prefixes")
    garbage_collection_interval: float = setting(7200.0, "time between collections (Go duration)",
                                                 duration=True)
    garbage_collection_threshold: float = setting(2400.0, "idle time after which a node or address prefix "
                                                  "is collected (Go duration)", duration=True)
    release_grace: float = setting(600.0, "how long a conduit the NSP stopped listing keeps its prefix and "
                                   "allocations before they are released (Go duration; 0 = at once)", duration=True)
    health_address: str = setting("", "extra grpc.health.v1 listener, e.g. unix:///tmp/health.sock "
                                  "(health is always served on the main port)")
    log_level: str = setting("INFO", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics (every IPv4 and IPv6 address)")
    metrics_port: int = setting(2226, "TCP port of /metrics")


def layouts_from(settings: Settings) -> list[tree.Layout]:
    """The per-family layouts of the served families; raise :class:`SettingsError` naming the variables."""
    families = {"dualstack": (tree.Family.IPV4, tree.Family.IPV6), "ipv4": (tree.Family.IPV4,),
                "ipv6": (tree.Family.IPV6,)}[settings.ip_family]
    return [_layout(settings, family) for family in families]


def _layout(settings: Settings, family: tree.Family) -> tree.Layout:
    suffix = f"IPV{family.version}"
    names = [f"{ENV_PREFIX}{n}_{suffix}" for n in ("PREFIX", "CONDUIT_PREFIX_LENGTH", "NODE_PREFIX_LENGTH")]
    raw = getattr(settings, f"prefix_ipv{family.version}")
    try:
        prefix = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        raise SettingsError(f"{names[0]}={raw!r}: not an IPv{family.version} prefix ({exc})") from None
    try:
        return tree.Layout(family, prefix, getattr(settings, f"conduit_prefix_length_ipv{family.version}"),
                           getattr(settings, f"node_prefix_length_ipv{family.version}"))
    except tree.LayoutError as exc:
        raise SettingsError(f"{', '.join(names)}: {exc}") from None


def check(settings: Settings) -> list[tree.Layout]:
    """Validate every setting at start; return the layouts. Raises :class:`SettingsError`."""
    if not settings.trench_name.strip():
        raise SettingsError(f"{ENV_PREFIX}TRENCH_NAME: must name the trench to serve")
    host, _, port = settings.nsp_service.rpartition(":")
    if grpcutil.unix_path(settings.nsp_service) is None and (not host or not port.isdigit()):
        raise SettingsError(f"{ENV_PREFIX}NSP_SERVICE={settings.nsp_service!r}: must be host:port or unix:PATH")
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"{ENV_PREFIX}PORT={settings.port}: must be a TCP port (0-65535)")
    if settings.release_grace < 0:
        raise SettingsError(f"{ENV_PREFIX}RELEASE_GRACE: must not be negative")
    for name in ("interval", "threshold"):
        if getattr(settings, f"garbage_collection_{name}") <= 0:
            raise SettingsError(f"{ENV_PREFIX}GARBAGE_COLLECTION_{name.upper()}: must be a positive duration")
    return layouts_from(settings)


def run(settings: Settings) -> int:
    """Entry point of ``meridio run ipam``: validate, then serve until SIGTERM/SIGINT."""
    try:
        layouts = check(settings)
    except SettingsError as exc:
        print(f"meridio run ipam: invalid setting {exc}", file=sys.stderr)
        return 2
    log = logmod.setup("ipam", settings.log_level).bind(trench=settings.trench_name)
    log.info("ipamStarting", settings=settingsmod.describe(settings))
    try:
        store = Store.open(settings.datasource)
    except IpamStoreError as exc:
        return _start_failed(log, exc)
    try:
        registry = Registry(store, trench=settings.trench_name, layouts=layouts, log=log, nodes=settings.nodes,
                            release_grace=settings.release_grace)
        return run_until_signalled(lambda stop: serve(settings, registry, stop, log=log))
    except (IpamStoreError, tree.LayoutConflict) as exc:
        return _start_failed(log, exc)
    finally:
        store.close()


def _start_failed(log: logmod.Logger, exc: Exception) -> int:
    log.critical("startFailed", reason="registryUnusable", error=str(exc))
    print(f"meridio run ipam: {exc}", file=sys.stderr)
    return 1


async def serve(settings: Settings, registry: Registry, stop: asyncio.Event, *,
                log: logmod.Logger = logmod.null) -> int:
    """Serve ``registry`` until ``stop`` is set, following the NSP's conduits and collecting garbage."""
    # Meridio's IPAM: Liveness = sub-service IPAM; Startup has no sub-service and is set once serving.
    health = healthmod.Health({healthmod.LIVENESS: [healthmod.IPAM], healthmod.STARTUP: []}, log=log)
    try:
        tls = tlsmod.from_settings(settings.tls_dir, settings.tls_insecure)
    except tlsmod.TlsError as exc:
        log.critical("startFailed", reason="tlsUnusable", error=str(exc))
        return 1
    policy = authz.Policy(trench=settings.trench_name) if tls is not None else None
    server = grpcutil.create_server()
    ipam_pb2_grpc.add_IpamServicer_to_server(IpamServicer(registry, log=log, policy=policy), server)
    health.add_to(server)
    try:
        port = grpcutil.add_listener(server, grpcutil.listen_address(settings.listen_address, settings.port),
                                     tls=tls, log=log)
        await server.start()
        if settings.health_address:
            await health.serve(settings.health_address)
    except grpcutil.ListenError as exc:
        log.critical("startFailed", reason="cannotListen", error=str(exc))
        await server.stop(None)
        return 1
    log.info("ipamStarted", port=port, families=[f.name for f in registry.layouts])
    endpoint = (await metricsmod.serve_or_log(IpamMetrics(registry).metrics, settings.metrics_port, log)
                if settings.metrics_enabled else None)
    health.set_serving(healthmod.IPAM)
    health.set_serving(healthmod.STARTUP)
    nsp = nspclient.NspClient(settings.nsp_service, log=log, tls=tls)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(guard(conduits.follow_conduits(nsp, registry, log=log), "followConduits",
                                             log))]
            tasks.append(group.create_task(guard(release_departed_forever(registry, log=log),
                                                 "releaseDeparted", log)))
            if settings.garbage_collection_enabled:
                tasks.append(group.create_task(guard(collect_garbage_forever(
                    registry, interval=settings.garbage_collection_interval,
                    threshold=settings.garbage_collection_threshold, log=log), "collectGarbage", log)))
            await stop.wait()
            for task in tasks:
                task.cancel()
    finally:
        log.info("ipamStopping")
        if endpoint is not None:
            await endpoint.close()
        await health.stop()
        await server.stop(1.0)
        await nsp.close()
    return 0
