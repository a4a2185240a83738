"""Stateless load balancer daemon (``meridio run lb``): programs the kernel so it forwards, in-kernel,
the conduit's VIP traffic to the stream targets with Maglev; Python never touches a packet.

Runs inside the FE+LB pod's network namespace. Watches the NSP (trench VIPs, its own conduit for the
port NATs, the conduit's streams, each stream's flows and ENABLED DEFAULT targets, the FRONTEND
targets) and reconciles ``table inet meridio-lb`` plus the fwmark rules and routes; serves
``loadbalancer.v1.StreamAvailabilityService`` on ``NSM_SOCKET`` for the collocated frontend.
Settings are ``NSM_*`` variables or flags, as Meridio's stateless-lb. A restart keeps the kernel
state (nothing is flushed; the difference is reconciled once every watch has answered), so forwarding
continues while the daemon is down. SIGTERM/SIGINT: tell the frontend "unavailable", exit 0, leave the
kernel state in place.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.api.pb.loadbalancer.v1 import stream_pb2_grpc
from meridio.api.pb.meridio.loadbalancer.v1 import conduitlink_pb2_grpc
from meridio.common import grpcutil, tasks
from meridio.common import health as healthmod
from meridio.common import log as logmod
from meridio.common import metrics as metricsmod
from meridio.common import settings as settingsmod
from meridio.common import tls as tlsmod
from meridio.common.settings import setting
from meridio.kernel import bpf, localsock, netlink, nftables
from meridio.loadbalancer import (
    announce,
    availability,
    conduitlink,
    datapath,
    fastpath,
    inputs,
    offsets,
    reconciler,
    routing,
    service,
)
from meridio.loadbalancer.metrics import LbMetrics

__all__ = ["ENV_PREFIX", "Settings", "run", "serve", "SYSCTLS"]

ENV_PREFIX = "NSM_"

SYSCTLS = {
    "net.ipv4.conf.all.forwarding": "1", "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.fib_multipath_hash_policy": "1", "net.ipv6.fib_multipath_hash_policy": "1",
}
"""Meridio's LB pod sysctls (reference §3.5), set at start when ``NSM_SET_SYSCTLS`` is true.

Not ``fwmark_reflect``: Meridio needs it for its NFQUEUE path plus a ``snat-local`` chain; here it would
give the kernel's own ICMP errors (e.g. fragmentation needed towards a target link) the packet's fwmark,
and so route them to the target instead of back to the client."""


@dataclasses.dataclass(frozen=True)
class Settings:
    conduit_name: str = setting("load-balancer", "conduit this LB serves")
    trench_name: str = setting("default", "trench of the conduit")
    nsp_service: str = setting("nsp-service:7778", "NSP address (host:port or unix:PATH)")
    socket: str = setting("unix:///var/lib/meridio/lb.sock", "StreamAvailabilityService socket (owner-only: 0600, "
                          "or 0660 with NSM_SOCKET_GROUP)")
    socket_uids: str = setting("", "uids besides root (and this process's) that may use the availability socket, "
                               "comma-separated (a peer under another uid also needs NSM_SOCKET_GROUP)")
    socket_group: str = setting("", "group of the availability socket: 0660 instead of 0600 ('' = owner only)")
    identifier_offset_start: int = setting(5000, "first fwmark/table offset; streams reserve max-targets each")
    hostname: str = setting("", "this pod's name: the identifier of the collocated frontend ('' = hostname)")
    target_interface_prefix: str = setting(
        "", "name prefix of the links to targets, exempt from defragmentation ('' = conduit name, 10 chars)")
    fwmark_rule_priority: int = setting(90, "priority of the 'fwmark X lookup X' policy rules")
    check_interval: float = setting(10.0, "retry pending targets and check routes at least this often (also on "
                                    "every link, address or route change)", duration=True)
    set_sysctls: bool = setting(True, "set forwarding, rp_filter, multipath hash and fwmark_reflect at start")
    counters_interval: float = setting(0.0, "log flow and target counters this often (0 = never)", duration=True)
    health_address: str = setting("", "health server, e.g. unix:///tmp/health.sock ('' = none)")
    metrics_enabled: bool = setting(False, "serve Prometheus metrics on /metrics")
    metrics_port: int = setting(2223, "port of the /metrics endpoint (every address of the pod)")
    log_level: str = setting("DEBUG", "log level", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    tls_dir: str = setting("", tlsmod.DIR_HELP, env=tlsmod.DIR_ENV)
    tls_insecure: bool = setting(False, tlsmod.INSECURE_HELP, env=tlsmod.INSECURE_ENV)
    netns: str = setting("", "namespace the conduit's proxies link into, announced in NSP with the "
                         "LOADBALANCER target ('' = this process's /run/netns name)")
    host: str = setting("", "the node this replica runs on: with NSM_POD_IP, proxies on other nodes link over "
                        "VXLAN ('' = every proxy links with a veth into NSM_NETNS)")
    pod_ip: str = setting("", "this pod's addresses on the pod network, comma-separated (tunnel sources)")
    link_port: int = setting(conduitlink.DEFAULT_PORT, "TCP port of the ConduitLink service (cross-node links)")
    announce_refresh: float = setting(20.0, "the LOADBALANCER announcement is refreshed this often (below the "
                                      "NSP keepalive)", duration=True)
    fastpath: bool = setting(True, "forward what it can decide with the eBPF fast path (tc ingress program, "
                             "bpf_redirect_neigh); false = nftables and policy routing only")
    fastpath_bpffs: str = setting("", "bpffs directory the fast path pins its program and maps on; mounted here "
                                  "if it is not one ('' = /run/meridio/lb-bpf/<hostname>)")
    fastpath_interfaces: str = setting("", "interfaces the fast path is attached on, comma-separated ('' = every "
                                       "interface but lo and the target links)")

    @property
    def interface_prefix(self) -> str:
        """Meridio derives it from the service name cut to 15 - 5 = 10 characters."""
        return self.target_interface_prefix or self.conduit_name[:10]


def run(settings: Settings) -> int:
    log = logmod.setup("lb", level=settings.log_level)
    try:
        localsock.access_from(settings.socket_uids, settings.socket_group, prefix=ENV_PREFIX)
    except settingsmod.SettingsError as exc:
        log.critical("lbBadSettings", error=str(exc))
        return 2
    log.info("lbStarting", settings=settingsmod.describe(settings))
    return tasks.run_until_signalled(lambda stop: serve(settings, stop, log=log))


def _conduit(s: Settings) -> model.Conduit:
    return model.Conduit(s.conduit_name, model.Trench(s.trench_name))


# --- watchers: each only updates the inputs and wakes the owner ----------------------------------

async def _watch_vips(nsp: NspClient, lb: service.LoadBalancer, s: Settings) -> None:
    async for vips in nsp.watch_vips(model.Vip("", "", model.Trench(s.trench_name))):
        lb.inputs.vips = vips
        lb.changed()


async def _watch_conduit(nsp: NspClient, lb: service.LoadBalancer, s: Settings) -> None:
    async for conduits in nsp.watch_conduits(_conduit(s)):
        lb.inputs.set_conduit(conduits, s.conduit_name)
        lb.changed()


async def _watch_frontends(nsp: NspClient, lb: service.LoadBalancer) -> None:
    wanted = model.Target.make(status=model.TargetStatus.ANY, type=model.TargetType.FRONTEND)
    async for frontends in nsp.watch_targets(wanted):
        lb.inputs.frontends = frontends
        lb.changed()


async def _watch_flows(nsp: NspClient, lb: service.LoadBalancer, stream: model.Stream) -> None:
    async for flows in nsp.watch_flows(model.Flow("", stream)):
        if any(s.name == stream.name for s in lb.inputs.streams or []):
            lb.inputs.flows[stream.name] = flows
            lb.changed()


async def _watch_targets(nsp: NspClient, lb: service.LoadBalancer, stream: model.Stream) -> None:
    wanted = model.Target.make(status=model.TargetStatus.ENABLED, type=model.TargetType.DEFAULT, stream=stream)
    async for targets in nsp.watch_targets(wanted):
        if any(s.name == stream.name for s in lb.inputs.streams or []):
            lb.inputs.targets[stream.name] = targets
            lb.changed()


async def _watch_streams(nsp: NspClient, lb: service.LoadBalancer, s: Settings, log: logmod.Logger) -> None:
    per_stream: dict[str, list[asyncio.Future[Any]]] = {}
    try:
        async for streams in nsp.watch_streams(model.Stream("", _conduit(s))):
            added, removed = lb.inputs.set_streams(streams)
            for name in removed:
                for task in per_stream.pop(name, []):
                    task.cancel()
            for name in sorted(added):
                stream = model.Stream(name, _conduit(s))
                slog = log.bind(stream=name)
                per_stream[name] = [
                    asyncio.ensure_future(tasks.guard(_watch_flows(nsp, lb, stream), "nspFlowWatch", slog)),
                    asyncio.ensure_future(tasks.guard(_watch_targets(nsp, lb, stream), "nspTargetWatch", slog)),
                ]
            if added or removed:
                log.info("streamsChanged", added=sorted(added), removed=sorted(removed))
            lb.changed()
    finally:
        for running in per_stream.values():
            for task in running:
                task.cancel()


async def _watch_kernel(lb: service.LoadBalancer) -> None:
    async for _ in netlink.watch_changes():
        lb.kernel_changed()


async def _log_counters(lb: service.LoadBalancer, interval: float, log: logmod.Logger) -> None:
    while True:
        await asyncio.sleep(interval)
        counters = await asyncio.to_thread(_counters(lb, lb.reconciler.datapath))
        log.info("counters", **{"counters": {n: [c.packets, c.bytes] for n, c in sorted(counters.items())}})


# --- assembly --------------------------------------------------------------------------------------

def _set_sysctls(log: logmod.Logger) -> None:
    for name, value in SYSCTLS.items():
        try:
            netlink.set_sysctl(name, value)
        except OSError as exc:
            log.warning("sysctlNotSet", sysctl=name, error=str(exc))


def _fastpath(s: Settings, nl: netlink.Netlink, hostname: str, log: logmod.Logger) -> fastpath.FastPath | None:
    if not s.fastpath:  # a program left attached by an earlier run would keep forwarding by stale maps
        try:
            fastpath.FastPath.detach_everywhere(nl, log=log)
        except bpf.BpfError as exc:
            log.warning("fastpathDetachFailed", error=str(exc))
        return None
    pins = pathlib.Path(s.fastpath_bpffs or f"/run/meridio/lb-bpf/{hostname}")
    interfaces = tuple(n.strip() for n in s.fastpath_interfaces.split(",") if n.strip())
    return fastpath.FastPath(nl, pin_dir=pins, first_fwmark=s.identifier_offset_start, interfaces=interfaces,
                             exclude_prefix=s.interface_prefix, log=log)


def _build(s: Settings, hostname: str, hc: healthmod.Health, log: logmod.Logger
           ) -> tuple[service.LoadBalancer, nftables.Nft, netlink.Netlink]:
    nft = nftables.Nft()
    nl = netlink.Netlink()
    rec = reconciler.Reconciler(
        datapath.NftDataPath(nft, log=log),
        routing.TargetRouting(nl, rule_priority=s.fwmark_rule_priority, first_table=s.identifier_offset_start,
                              log=log),
        offsets.OffsetAllocator(s.identifier_offset_start), target_interface_prefix=s.interface_prefix,
        fastpath=_fastpath(s, nl, hostname, log), log=log)
    lb = service.LoadBalancer(inputs.Inputs(hostname), rec, availability.Availability(hostname, log=log),
                              health=hc, check_interval=s.check_interval, log=log)
    return lb, nft, nl


def _counters(lb: service.LoadBalancer, nft: datapath.NftDataPath) -> Callable[[], dict[str, datapath.CounterValue]]:
    """The LB's counters as it reports them: what nftables counted plus what the fast path forwarded."""
    def read() -> dict[str, datapath.CounterValue]:
        fast = lb.reconciler.fastpath
        return datapath.add_counters(nft.counters(), fast.counters() if fast is not None else {})

    return read


def _lb_metrics(lb: service.LoadBalancer, nl: netlink.Netlink, reader: nftables.Nft, s: Settings) -> LbMetrics:
    """Scrapes read counters through their own libnftables handle (``reader``): a handle is not shared
    between threads, and a reconcile may be running in another one."""
    rec = lb.reconciler
    m = LbMetrics(trench=s.trench_name, conduit=s.conduit_name,
                  state=lambda: (lb.desired, lb.report, lb.availability.available),
                  offsets=lambda: {name: off for name, (off, _) in rec.offsets.reservations.items()},
                  counters=_counters(lb, datapath.NftDataPath(reader)), interfaces=nl.interface_stats,
                  interface_prefix=s.interface_prefix)
    lb.on_reconciled = m.reconciled
    return m


async def _serve_availability(lb: service.LoadBalancer, address: str, tls: tlsmod.Tls | None,
                              access: localsock.Access,
                              log: logmod.Logger) -> tuple[Any, localsock.GuardedListener | None]:
    """The availability server (mutual TLS when ``tls`` is given); on a unix socket behind a
    :class:`~meridio.kernel.localsock.GuardedListener` (owner-only, callers' uids checked)."""
    server = grpcutil.create_server()
    stream_pb2_grpc.add_StreamAvailabilityServiceServicer_to_server(
        availability.AvailabilityService(lb.availability), server)
    path = grpcutil.unix_path(address)
    guard = localsock.GuardedListener(path, access, log=log) if path else None
    try:
        if guard is None:
            grpcutil.add_listener(server, address, tls=tls, log=log)
        else:
            guard.prepare()
            with localsock.private_umask():
                grpcutil.add_listener(server, f"unix:{guard.backend}", tls=tls, log=log)
        await server.start()
        if guard is not None:
            await guard.start()
    except OSError as exc:
        await server.stop(None)
        if guard is not None:
            await guard.close()
        raise grpcutil.ListenError(f"cannot serve {address!r}: {exc}") from None
    return server, guard


async def _serve_links(s: Settings, hostname: str, pod_ips: tuple[str, ...], nl: netlink.Netlink,
                       tls: tlsmod.Tls | None, log: logmod.Logger) -> Any:
    """The ConduitLink server on ``[::]:link_port`` (the pod network), mutual TLS when ``tls`` is given."""
    links = conduitlink.Links(conduitlink.NetlinkKernel(nl), identifier=hostname, trench=s.trench_name,
                              conduit=s.conduit_name, ifprefix=s.interface_prefix, local=pod_ips, log=log)
    server = grpcutil.create_server()
    servicer = conduitlink.Servicer(links, log=log, check_identity=tls is not None)
    conduitlink_pb2_grpc.add_ConduitLinkServicer_to_server(servicer, server)
    try:
        grpcutil.add_listener(server, grpcutil.listen_address("[::]", s.link_port), tls=tls, log=log)
        await server.start()
    except OSError as exc:
        await server.stop(None)
        raise grpcutil.ListenError(f"cannot serve [::]:{s.link_port}: {exc}") from None
    return server


async def serve(s: Settings, stop: asyncio.Event, *, log: logmod.Logger = logmod.null) -> int:
    """Run the LB until ``stop`` is set; returns the exit code."""
    hostname = s.hostname or socket.gethostname()
    log = log.bind(trench=s.trench_name, conduit=s.conduit_name)
    if s.set_sysctls:
        _set_sysctls(log)
    hc = healthmod.Health({healthmod.READINESS: [healthmod.NSP_CLI, healthmod.EGRESS, healthmod.STREAM,
                                                 healthmod.FLOW], healthmod.LIVENESS: []}, log=log)
    hc.set_serving(healthmod.LIVENESS)
    lb, nft, nl = _build(s, hostname, hc, log)
    try:
        tls = tlsmod.from_settings(s.tls_dir, s.tls_insecure)
        server, guard = await _serve_availability(
            lb, s.socket, tls, localsock.access_from(s.socket_uids, s.socket_group, prefix=ENV_PREFIX), log)
    except (grpcutil.ListenError, settingsmod.SettingsError, tlsmod.TlsError) as exc:
        log.critical("lbStartFailed", error=str(exc))
        nl.close()
        nft.close()
        return 1
    if s.health_address:
        await hc.serve(s.health_address)
    reader = nftables.Nft()
    endpoint = (await metricsmod.serve_or_log(_lb_metrics(lb, nl, reader, s).metrics, s.metrics_port, log)
                if s.metrics_enabled else None)
    nsp = NspClient(s.nsp_service, log=log, on_connectivity=lambda up: hc.set_serving(healthmod.NSP_CLI, up),
                    tls=tls)
    loops: list[Coroutine[Any, Any, Any]] = [
        tasks.guard(_watch_vips(nsp, lb, s), "nspVipWatch", log),
        tasks.guard(_watch_conduit(nsp, lb, s), "nspConduitWatch", log),
        tasks.guard(_watch_frontends(nsp, lb), "nspFrontendWatch", log),
        tasks.guard(_watch_streams(nsp, lb, s, log), "nspStreamWatch", log),
        tasks.guard(_watch_kernel(lb), "kernelWatch", log),
    ]
    if s.counters_interval > 0:
        loops.append(tasks.guard(_log_counters(lb, s.counters_interval, log), "countersLog", log))
    links_server = None
    pod_ips = tuple(a.strip() for a in s.pod_ip.split(",") if a.strip())
    if s.host and pod_ips:
        try:
            links_server = await _serve_links(s, hostname, pod_ips, nl, tls, log)
        except grpcutil.ListenError as exc:
            log.error("conduitLinkServiceFailed", error=str(exc))  # proxies on other nodes cannot link
    announcer = announce.for_lb(lb, nsp, identifier=hostname, netns=s.netns, ifprefix=s.interface_prefix,
                                trench=s.trench_name, conduit=s.conduit_name, refresh=s.announce_refresh, log=log,
                                node=s.host if links_server else "", addresses=pod_ips if links_server else (),
                                link_port=s.link_port if links_server else 0)
    if announcer is not None:  # the conduit's proxies link to this replica while it is unblocked
        loops.append(tasks.guard(announcer.run(), "lbAnnounce", log))
    running = [asyncio.ensure_future(c) for c in loops]
    log.info("lbStarted", hostname=hostname, socket=s.socket, interfacePrefix=s.interface_prefix)
    owner = asyncio.ensure_future(tasks.guard(lb.run(stop), "lbReconcile", log, expect_end=True))
    done, _ = await asyncio.wait([owner, *running], return_when=asyncio.FIRST_COMPLETED)
    code = 0 if stop.is_set() else 1
    stop.set()
    lb.availability.close()
    for t in [owner, *running]:
        t.cancel()
    for t in [owner, *running]:
        with contextlib.suppress(BaseException):
            await t
    if guard is not None:
        await guard.close()
    await server.stop(2.0)
    if links_server is not None:
        await links_server.stop(2.0)
    if endpoint is not None:
        await endpoint.close()
    await nsp.close()
    await hc.stop()
    nl.close()
    nft.close()
    reader.close()
    log.info("lbStopped", exitCode=code, kernelStateKept=True)
    return code
