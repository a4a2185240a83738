"""TAPA daemon: ``ambassador.v1.Tap`` for the target application on a unix socket (``meridio run tapa``).

Settings ``MERIDIO_*`` as Meridio's TAPA (``MERIDIO_NAME``, ``MERIDIO_NAMESPACE``, ``MERIDIO_NODE``,
``MERIDIO_SOCKET``, ``MERIDIO_NSP_ENTRY_TIMEOUT``, ``MERIDIO_TIMEOUT``, ``MERIDIO_LOG_LEVEL``) plus two
address templates of this implementation: ``MERIDIO_NSP_SERVICE`` (``{trench}``, ``{namespace}``: a
gRPC target, ``host:port`` or ``unix:PATH``) and ``MERIDIO_PROXY_SOCKET`` (``{trench}``, ``{conduit}``,
``{node}``: the link service socket of the conduit's proxy on this node). Health (``grpc.health.v1``
on the API socket, and on ``MERIDIO_HEALTH_ADDRESS`` if set): ``Liveness`` = ``Ambassador``, ``Startup``
once serving. The API socket is owner-only (``0600``, ``0660`` with ``MERIDIO_SOCKET_GROUP``) and a
caller whose uid is not root, the TAPA's own or in ``MERIDIO_SOCKET_UIDS`` is disconnected
(:mod:`meridio.kernel.localsock`). SIGTERM/SIGINT: every stream is closed (unregistered, links disconnected), exit 0.
Metrics (:mod:`meridio.tapa.metrics`): ``/metrics`` on ``MERIDIO_METRICS_PORT`` when
``MERIDIO_METRICS_ENABLED``; a port that cannot be used is logged and the TAPA runs without metrics.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket

from meridio.api.pb.ambassador.v1 import tap_pb2_grpc
from meridio.common import grpcutil, health, tasks
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.common import settings as settingsmod
from meridio.common import tls as tlsmod
from meridio.common.settings import SettingsError, setting
from meridio.kernel import localsock
from meridio.tapa import linkport, nspport, opener, service
from meridio.tapa.metrics import TapaMetrics
from meridio.tapa.refs import ConduitRef
from meridio.tapa.tap import LinkFactory, Tap, TapOptions

__all__ = ["ENV_PREFIX", "Settings", "run", "serve", "check"]

ENV_PREFIX = "MERIDIO_"
_HOST = socket.gethostname()


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str = setting(_HOST, "target name (pod name): this target's identity towards the proxies")
    namespace: str = setting("default", "namespace of the target (fills {namespace} in the NSP address)")
    node: str = setting(_HOST, "node of the target (fills {node} in the proxy socket)")
    socket: str = setting("unix:///var/lib/meridio/ambassador.sock", "address of the TAPA API (unix:PATH; "
                          "owner-only: 0600, or 0660 with MERIDIO_SOCKET_GROUP)")
    socket_uids: str = setting("", "uids besides root (and this process's) that may use the API socket, "
                               "comma-separated (an application under another uid also needs MERIDIO_SOCKET_GROUP)")
    socket_group: str = setting("", "group of the API socket: 0660 instead of 0600 ('' = owner only)")
    nsp_service: str = setting("nsp-service-{trench}.{namespace}:7778",
                               "NSP address template with {trench} and {namespace} (host:port or unix:PATH)")
    proxy_socket: str = setting("/var/lib/meridio/{trench}/{conduit}/{node}/link.sock",
                                "proxy link service socket template with {trench}, {conduit} and {node}")
    nsp_entry_timeout: float = setting(30.0, "registrations are refreshed this often (below the NSP's "
                                       "keepalive)", duration=True)
    timeout: float = setting(15.0, "how long one open attempt may take (stream PENDING)", duration=True)
    retry_interval: float = setting(1.0, "pause between failed open attempts", duration=True)
    link_retry_interval: float = setting(2.0, "pause between failed link connections", duration=True)
    nsp_call_timeout: float = setting(5.0, "deadline of one NSP call", duration=True)
    max_watchers: int = setting(service.MAX_WATCHERS, "Watch streams served at once (more: RESOURCE_EXHAUSTED)")
    health_address: str = setting("", "extra health server address, e.g. unix:///tmp/health.sock ('' = none)")
    log_level: str = setting("INFO", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics (every IPv4 and IPv6 address)")
    metrics_port: int = setting(2228, "TCP port of /metrics")


def check(settings: Settings) -> str | None:
    """A one-line problem with ``settings``, or ``None``."""
    for field, template, keys in (("MERIDIO_NSP_SERVICE", settings.nsp_service, ("trench", "namespace")),
                                  ("MERIDIO_PROXY_SOCKET", settings.proxy_socket, ("trench", "conduit", "node"))):
        try:
            template.format(**{k: "x" for k in keys})
        except (KeyError, IndexError, ValueError) as exc:
            return f"{field} {template!r}: only {', '.join('{' + k + '}' for k in keys)} may be used ({exc!r})"
    if not settings.name:
        return "MERIDIO_NAME must not be empty"
    for field, value in (("MERIDIO_NSP_ENTRY_TIMEOUT", settings.nsp_entry_timeout),
                         ("MERIDIO_TIMEOUT", settings.timeout), ("MERIDIO_RETRY_INTERVAL", settings.retry_interval),
                         ("MERIDIO_LINK_RETRY_INTERVAL", settings.link_retry_interval)):
        if value <= 0:
            return f"{field} must be positive, not {value}"
    if settings.max_watchers < 1:
        return f"MERIDIO_MAX_WATCHERS must be at least 1, not {settings.max_watchers}"
    if not grpcutil.unix_path(settings.socket):
        return f"MERIDIO_SOCKET {settings.socket[:64]!r} must be a unix socket address (unix:PATH)"
    try:
        localsock.access_from(settings.socket_uids, settings.socket_group, prefix=ENV_PREFIX)
    except SettingsError as exc:
        return str(exc)
    return None


def run(settings: Settings) -> int:
    log = logmod.setup("tapa", level=settings.log_level)
    problem = check(settings)
    if problem is not None:
        log.critical("tapaStartFailed", error=problem, reason="invalidSetting")
        return 2
    log.info("tapaStarting", settings=settingsmod.describe(settings))
    return tasks.run_until_signalled(lambda stop: serve(settings, stop, log=log))


def _link_factory(settings: Settings, log: logmod.Logger, tls: tlsmod.Tls | None) -> LinkFactory:
    def factory(conduit: ConduitRef) -> linkport.ProxyLink:
        path = settings.proxy_socket.format(trench=conduit.trench, conduit=conduit.conduit, node=settings.node)
        return linkport.ProxyLink(path, settings.name, log=log.bind(trench=conduit.trench, conduit=conduit.conduit),
                                  tls=tls)
    return factory


def _log_signals(stop: asyncio.Event, log: logmod.Logger) -> None:
    """Say which signal stops the TAPA (replaces the plain handlers of ``run_until_signalled``)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        def handler(sig: signal.Signals = sig) -> None:
            log.info("tapaStopping", reason="signal", signal=sig.name)
            stop.set()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)


def build_tap(settings: Settings, log: logmod.Logger, *, tls: tlsmod.Tls | None = None) -> Tap:
    """The TAPA core; ``tls``: mutual TLS towards the NSPs and proxies (``None`` only in insecure mode)."""
    def trench_factory(trench: str) -> nspport.NspSession:
        address = nspport.nsp_address(settings.nsp_service, trench=trench, namespace=settings.namespace)
        return nspport.NspSession(address, trench, call_timeout=settings.nsp_call_timeout, log=log, tls=tls)

    options = TapOptions(timing=opener.Timing(settings.nsp_entry_timeout, settings.timeout, settings.retry_interval),
                         connect_retry=settings.link_retry_interval)
    return Tap(trench_factory=trench_factory, link_factory=_link_factory(settings, log, tls), options=options,
               log=log.bind(target=settings.name))


async def serve(settings: Settings, stop: asyncio.Event, *, log: logmod.Logger = logmod.null) -> int:
    """Run the TAPA until ``stop``; returns the exit code."""
    _log_signals(stop, log)
    try:
        tls = tlsmod.from_settings(settings.tls_dir, settings.tls_insecure)
    except tlsmod.TlsError as exc:
        log.critical("tapaStartFailed", error=str(exc), reason="tlsUnusable")
        return 1
    tap = build_tap(settings, log, tls=tls)
    hc = health.Health({health.LIVENESS: [health.AMBASSADOR]}, log=log)
    hc.register(health.STARTUP)
    server = grpcutil.create_server()
    tap_pb2_grpc.add_TapServicer_to_server(service.TapServicer(tap, max_watchers=settings.max_watchers), server)
    hc.add_to(server)
    access = localsock.access_from(settings.socket_uids, settings.socket_group, prefix=ENV_PREFIX)
    guard = localsock.GuardedListener(grpcutil.unix_path(settings.socket) or "", access, log=log)
    try:
        guard.prepare()
        with localsock.private_umask():
            grpcutil.add_listener(server, f"unix:{guard.backend}")
        await server.start()
        await guard.start()
        if settings.health_address:
            await hc.serve(settings.health_address)
    except (grpcutil.ListenError, OSError, RuntimeError) as exc:
        log.critical("tapaStartFailed", error=str(exc), reason="cannotListen")
        await server.stop(None)
        await guard.close()
        return 1
    endpoint = (await metricsmod.serve_or_log(TapaMetrics(tap).metrics, settings.metrics_port, log)
                if settings.metrics_enabled else None)
    runner = asyncio.ensure_future(tap.run(stop))
    await asyncio.sleep(0)  # let the TAPA enter its task group before the first request
    hc.set_serving(health.AMBASSADOR)
    hc.set_serving(health.STARTUP)
    log.info("tapaStarted", socket=settings.socket, target=settings.name)
    await runner
    if endpoint is not None:
        await endpoint.close()
    hc.shutdown()
    await guard.close()
    await server.stop(1.0)
    await hc.stop(0.2)
    log.info("tapaStopped", exitCode=0)
    return 0
