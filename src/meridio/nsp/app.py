"""NSP daemon: serves the trench configuration and the target registry over gRPC (``meridio run nsp``).

One ``grpc.aio`` server on ``NSP_LISTEN_ADDRESS:NSP_PORT`` hosts ``nsp.v1.ConfigurationManager``,
``nsp.v1.TargetRegistry`` and ``grpc.health.v1.Health`` (probe ``Liveness`` = sub-service ``NSP``, as
Meridio; optionally also on ``NSP_HEALTH_ADDRESS``, e.g. Meridio's ``unix:///tmp/health.sock``).
Configuration: the ConfigMap-format file ``NSP_CONFIG_FILE``, polled every
``NSP_CONFIG_POLL_INTERVAL``. Registry: sqlite at ``NSP_DATASOURCE``; entries expire after
``NSP_ENTRY_TIMEOUT`` without a refresh. SIGTERM/SIGINT: stop accepting calls, end the watch streams,
close the database, exit 0. A fatal start problem (port taken, database unusable) exits 1 after one
``critical`` log line. Metrics (:mod:`meridio.nsp.metrics`): ``/metrics`` on ``NSP_METRICS_PORT`` when
``NSP_METRICS_ENABLED``; a port that cannot be used is logged and the NSP runs without metrics.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Coroutine
from typing import Any

from meridio.api import kubeapi
from meridio.common import clock, grpcutil, health, tasks
from meridio.common import identity as identitymod
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.common import settings as settingsmod
from meridio.common import tls as tlsmod
from meridio.common.settings import setting
from meridio.nsp import authz, config, registry, service, source, store, targets, watchers
from meridio.nsp import metrics as nspmetrics

__all__ = ["ENV_PREFIX", "Settings", "run", "serve"]

ENV_PREFIX = "NSP_"


@dataclasses.dataclass(frozen=True)
class Settings:
    port: int = setting(7778, "gRPC port (ConfigurationManager, TargetRegistry, health)")
    listen_address: str = setting("[::]", "address to listen on ([::] = every address, IPv4 too; or unix:PATH)")
    config_file: str = setting("/etc/meridio/nsp/configuration.yaml",
                               "ConfigMap-format YAML file with the trench configuration (watched)")
    trench_name: str = setting("", "the trench this NSP serves: a configuration file naming another trench is "
                               "rejected ('' = accept any)")
    config_poll_interval: float = setting(0.2, "how often the configuration file is checked", duration=True)
    config_map_name: str = setting("", "read the configuration from this ConfigMap through the Kubernetes API "
                                       "(watched; the pod's ServiceAccount or KUBECONFIG) instead of the file")
    namespace: str = setting("", "the ConfigMap's namespace (the pod's own)")
    datasource: str = setting(store.DEFAULT_PATH, "sqlite file of the target registry (parents created)")
    entry_timeout: float = setting(registry.DEFAULT_TIMEOUT,
                                   "a target not re-registered within this time is removed", duration=True)
    max_watchers: int = setting(watchers.MAX_WATCHERS, "watch streams served at once (more: RESOURCE_EXHAUSTED)")
    max_watchers_per_peer: int = setting(watchers.MAX_WATCHERS_PER_PEER,
                                         "watch streams one TCP connection may hold (unix sockets: the total only)")
    health_address: str = setting("", "extra health server address, e.g. unix:///tmp/health.sock ('' = none)")
    log_level: str = setting("INFO", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics (every IPv4 and IPv6 address)")
    metrics_port: int = setting(2225, "TCP port of /metrics")


def run(settings: Settings) -> int:
    log = logmod.setup("nsp", level=settings.log_level)
    log.info("nspStarting", settings=settingsmod.describe(settings))
    return tasks.run_until_signalled(lambda stop: serve(settings, stop, log=log))


@dataclasses.dataclass
class _Parts:
    manager: config.ConfigurationManager
    targets: targets.Targets
    health: health.Health
    server: Any
    port: int


def _policy(tls: tlsmod.Tls | None) -> authz.Policy | None:
    """Authorisation for the trench this NSP's own certificate names (``None`` in insecure mode)."""
    if tls is None:
        return None
    try:
        own = identitymod.from_certificate_pem(tls.load().cert)
    except identitymod.IdentityError as exc:
        raise tlsmod.TlsError(f"{tls.directory / tlsmod.CERT_FILE}: {exc}") from None
    if own.component is not identitymod.Component.NSP or own.trench is None:
        raise tlsmod.TlsError(f"{tls.directory / tlsmod.CERT_FILE}: identity {own.uri!r} is not an NSP of a trench")
    return authz.Policy(trench=own.trench)


def pending_options(max_watchers: int) -> list[tuple[str, int]]:
    """gRPC core's queue of calls that arrived but that the Python server has not picked up yet, made to
    hold every watch the quota lets in.

    The core cancels calls waiting in that queue once it holds more than ``grpc.server.max_pending_requests``
    (default 1000), and refuses new ones beyond the hard limit (default 3000). The aio server picks calls
    up one at a time on its loop, so 2000 watches opened at one instant left about 10 % of them
    ``CANCELLED`` before any handler saw them (``bench/nsp_watchers.py``). With the limits above
    ``NSP_MAX_WATCHERS``, a burst the quota admits is served; a larger one still meets the quota's
    ``RESOURCE_EXHAUSTED`` or, beyond the hard limit, the core's.
    """
    return [("grpc.server.max_pending_requests", max_watchers + 1000),
            ("grpc.server.max_pending_requests_hard_limit", 2 * max_watchers + 3000)]


async def _start(settings: Settings, log: logmod.Logger) -> _Parts:
    tls = tlsmod.from_settings(settings.tls_dir, settings.tls_insecure)
    policy = _policy(tls)
    db, restored = store.open_store(settings.datasource, log=log)
    reg = registry.Registry(clock=clock.SystemClock(), timeout=settings.entry_timeout)
    reg.restore(restored)
    registry_ = targets.Targets(reg, db, log=log)
    manager = config.ConfigurationManager()
    hc = health.Health({health.LIVENESS: [health.NSP]}, log=log)
    server = grpcutil.create_server(options=pending_options(settings.max_watchers))
    quota = watchers.Quota(total=settings.max_watchers, per_peer=settings.max_watchers_per_peer)
    service.add_to_server(server, manager, registry_, quota=quota, log=log, policy=policy)
    hc.add_to(server)
    try:
        port = grpcutil.add_listener(server, grpcutil.listen_address(settings.listen_address, settings.port),
                                     tls=tls, log=log)
        await server.start()
        if settings.health_address:
            await hc.serve(settings.health_address)
    except BaseException:
        registry_.close()
        await server.stop(None)
        raise
    if restored:
        log.info("targetsRestored", count=len(restored))
    return _Parts(manager, registry_, hc, server, port)


async def serve(settings: Settings, stop: asyncio.Event, *, log: logmod.Logger = logmod.null) -> int:
    """Run the NSP until ``stop`` is set; returns the exit code."""
    try:
        parts = await _start(settings, log)
    except (store.RegistryStoreError, grpcutil.ListenError, OSError) as exc:
        log.critical("nspStartFailed", error=str(exc))
        return 1
    files = source.FileSource(settings.config_file, parse=source.parser_for(settings.trench_name),
                              interval=settings.config_poll_interval, log=log)
    config_source: source.FileSource | source.ConfigMapSource = files
    if settings.config_map_name:
        try:
            creds = kubeapi.from_kubeconfig(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") \
                else kubeapi.in_cluster()
        except (kubeapi.ApiError, OSError, KeyError, ValueError) as exc:
            log.critical("nspStartFailed", error=f"NSP_CONFIG_MAP_NAME: no Kubernetes API credentials: {exc}")
            await _shutdown(parts, log)
            return 1
        config_source = source.ConfigMapSource(creds, settings.namespace or creds.namespace, settings.config_map_name,
                                               parse=source.parser_for(settings.trench_name), log=log)
    else:
        first = files.poll()  # serve the file's configuration from the very first watch
        if first is not None:
            parts.manager.update(first)
    endpoint = None
    if settings.metrics_enabled:
        m = nspmetrics.NspMetrics(parts.manager, parts.targets, config_source)
        endpoint = await metricsmod.serve_or_log(m.metrics, settings.metrics_port, log)
    loops: list[Coroutine[Any, Any, Any]] = [
        tasks.guard(config_source.run(_applier(parts.manager, log)), "configSource", log),
        tasks.guard(parts.targets.run_expiry(), "targetExpiry", log),
    ]
    running = [asyncio.ensure_future(c) for c in loops]
    parts.health.set_serving(health.NSP)
    log.info("nspStarted", address=settings.listen_address, port=parts.port)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
    code = 0 if stopped in done else 1
    for t in [stopped, *running]:
        t.cancel()
    for t in running:
        with contextlib.suppress(BaseException):
            await t
    if endpoint is not None:
        await endpoint.close()
    await _shutdown(parts, log)
    log.info("nspStopped", exitCode=code)
    return code


def _applier(manager: config.ConfigurationManager, log: logmod.Logger) -> Any:
    def apply(cfg: Any) -> None:
        notified = manager.update(cfg)
        log.debug("configServed", watchersNotified=notified)
    return apply


async def _shutdown(parts: _Parts, log: logmod.Logger) -> None:
    parts.health.shutdown()
    # Stop accepting calls first, then end the watch streams so the grace period is not spent
    # waiting for streams that never end by themselves; unary calls in flight still complete.
    stopping = asyncio.ensure_future(parts.server.stop(2.0))
    await asyncio.sleep(0)
    parts.manager.close()
    parts.targets.close_watchers()
    await stopping
    await parts.health.stop(0.5)
    parts.targets.close()
