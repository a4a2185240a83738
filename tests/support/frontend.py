"""Test and benchmark support for the frontend (not used by the daemon).

- :func:`build_segment`: an external segment in network namespaces the caller created — a gateway
  namespace holding a bridge (``br0``, 192.0.2.1/24 and 2001:db8:e::1/64) and N frontend namespaces,
  each with ``ext0`` (192.0.2.2+i, 2001:db8:e::2+i) plugged into the bridge;
- :func:`gateway_config`: the gateway-side BIRD configuration for that segment (dynamic peers, passive
  BFD, a default route to the FEs, ECMP), rendered with :mod:`meridio.bird.gatewayconf`;
- :func:`bird_command`: one synchronous control-socket query with the sans-IO parser (tests are sync);
- :func:`kernel_route`: the kernel route to a prefix in a namespace, as ``ip -j route`` reports it;
- :class:`LbAvailabilityDouble`: a **test double of the load balancer**: a real
  ``loadbalancer.v1.StreamAvailabilityService`` gRPC server on a unix socket whose availability the test
  flips (the real LB daemon serves the same API).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.api.pb.loadbalancer.v1 import stream_pb2, stream_pb2_grpc
from meridio.api.pb.nsp.v1 import targetregistry_pb2, targetregistry_pb2_grpc
from meridio.bird import birdc, gatewayconf
from meridio.bird.birdconf import Bfd, SessionTimers
from meridio.kernel import netns as netnsmod

__all__ = ["Segment", "build_segment", "gateway_config", "bird_command", "kernel_route", "nexthops",
           "LbAvailabilityDouble", "FAST_TIMERS", "frontend_args", "nsp_config", "gateway_item", "FeEnv",
           "eventually"]

FAST_TIMERS = SessionTimers(connect_retry_s=1, error_wait_s=(1, 2), connect_delay_s=1)
V4 = ipaddress.ip_network("192.0.2.0/24")
V6 = ipaddress.ip_network("2001:db8:e::/64")


@dataclasses.dataclass(frozen=True)
class Segment:
    gw_ns: str
    fe_nss: tuple[str, ...]
    gw_interface: str = "br0"
    fe_interface: str = "ext0"

    @property
    def gw_v4(self) -> str:
        return str(V4[1])

    @property
    def gw_v6(self) -> str:
        return str(V6[1])

    def fe_v4(self, i: int) -> str:
        return str(V4[2 + i])

    def fe_v6(self, i: int) -> str:
        return str(V6[2 + i])


def _ip(ns: str | None, *args: str) -> None:
    subprocess.run(["ip", *(["-n", ns] if ns else []), *args], check=True, capture_output=True, text=True)


def build_segment(gw_ns: str, fe_nss: Sequence[str], *, fe_ipv4: bool = True) -> Segment:
    """``fe_ipv4=False``: the FEs get no IPv4 address at all (an IPv6-only trench)."""
    seg = Segment(gw_ns, tuple(fe_nss))
    _ip(gw_ns, "link", "add", "br0", "type", "bridge")
    _ip(gw_ns, "link", "set", "br0", "up")
    _ip(gw_ns, "addr", "add", f"{seg.gw_v4}/24", "dev", "br0")
    _ip(gw_ns, "addr", "add", f"{seg.gw_v6}/64", "dev", "br0", "nodad")
    for i, fe in enumerate(fe_nss):
        port = f"fe{i}"
        _ip(None, "link", "add", port, "netns", gw_ns, "type", "veth", "peer", "name", "ext0", "netns", fe)
        _ip(gw_ns, "link", "set", port, "master", "br0", "up")
        # Keep the IPv6 address if the link goes down (else the v6 session never comes back).
        netnsmod.run(fe, ["sysctl", "-qw", "net.ipv6.conf.ext0.keep_addr_on_down=1"])
        _ip(fe, "link", "set", "ext0", "up")
        if fe_ipv4:
            _ip(fe, "addr", "add", f"{seg.fe_v4(i)}/24", "dev", "ext0")
        _ip(fe, "addr", "add", f"{seg.fe_v6(i)}/64", "dev", "ext0", "nodad")
    return seg


def gateway_config(seg: Segment, *, bfd: Bfd | None = Bfd(50, 50, 3), password: str | None = None,
                   families: tuple[int, ...] = (4, 6), log_file: str | None = None,
                   **kw: Any) -> gatewayconf.GatewayRouterConfig:
    ranges = tuple(r for r in (V4, V6) if r.version in families)
    return gatewayconf.GatewayRouterConfig(
        interface=seg.gw_interface, router_id=ipaddress.IPv4Address(seg.gw_v4), peer_ranges=ranges, bfd=bfd,
        password=password, timers=FAST_TIMERS, log_file=log_file, log_stderr_all=True, **kw)


def bird_command(socket_path: str | pathlib.Path, command: str, timeout: float = 5.0) -> birdc.Reply:
    """Send one command to the BIRD at ``socket_path`` and return its reply (synchronously)."""
    parser = birdc.ReplyParser()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        replies: list[birdc.Reply] = []
        sent = False
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"BIRD at {socket_path} closed the connection")
            replies += [e for e in parser.feed(data) if isinstance(e, birdc.Reply)]
            if replies and not sent:
                sock.sendall(birdc.encode_command(command))
                sent = True
            if len(replies) >= 2:
                return replies[1]


def kernel_route(ns: str, prefix: str, table: str | int = "main") -> list[dict[str, Any]]:
    """``ip -j route show <prefix> table <table>`` in ``ns`` (``[]`` if absent)."""
    family = "-6" if ":" in prefix else "-4"
    out = netnsmod.run(ns, ["ip", "-j", family, "route", "show", prefix, "table", str(table)], check=False)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def nexthops(route: list[dict[str, Any]]) -> set[str]:
    """The next-hop addresses of a route from :func:`kernel_route` (ECMP routes have several)."""
    hops: set[str] = set()
    for entry in route:
        if "gateway" in entry:
            hops.add(entry["gateway"])
        for hop in entry.get("nexthops", []):
            hops.add(hop["gateway"])
    return hops


class LbAvailabilityDouble(stream_pb2_grpc.StreamAvailabilityServiceServicer):
    """TEST DOUBLE of the LB: a real ``StreamAvailabilityService`` whose availability the test sets.

    Runs a threaded gRPC server, so synchronous tests can block freely. ``set_available(True)`` sends
    ``Response{targets: [{context: {identifier: <hostname>}}]}`` to every watcher, ``False`` an empty
    ``Target{}`` (what Meridio's LB sends when no stream has a target).
    """

    def __init__(self, socket_path: str | pathlib.Path, hostname: str) -> None:
        self.address = f"unix:{socket_path}"
        self.hostname = hostname
        self._available = False
        self._version = 0
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self.changed_at: float = 0.0

    def _response(self) -> stream_pb2.Response:
        if self._available:
            return stream_pb2.Response(targets=[stream_pb2.Target(context={"identifier": self.hostname})])
        return stream_pb2.Response(targets=[stream_pb2.Target()])

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[stream_pb2.Response]:
        seen = -1
        while context.is_active():
            with self._cond:
                if seen == self._version:
                    self._cond.wait(0.2)
                    continue
                seen, response = self._version, self._response()
            yield response

    def set_available(self, available: bool) -> float:
        """Flip availability; returns the ``time.time()`` of the change (for latency measurements)."""
        with self._cond:
            self._available = available
            self._version += 1
            self.changed_at = time.time()
            self._cond.notify_all()
            return self.changed_at

    def start(self) -> LbAvailabilityDouble:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        stream_pb2_grpc.add_StreamAvailabilityServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(self.address)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None


def frontend_args(*, nsp: str, trench: str, attractor: str, hostname: str, lb_socket: str,
                  run_dir: str | pathlib.Path, health: str = "", extra: Sequence[str] = ()) -> list[str]:
    """``meridio run frontend`` arguments for a test: fast BGP reconnection, BIRD's log in ours."""
    return ["run", "frontend", "--nsp-service", nsp, "--trench-name", trench, "--attractor-name", attractor,
            "--external-interface", "ext0", "--hostname", hostname, "--lb-socket", lb_socket,
            "--bird-run-dir", str(run_dir), "--bird-log-file=", "--log-bird", "true", "--ecmp", "true",
            "--bgp-connect-retry-time", "1", "--bgp-error-wait-time", "1,2", "--bgp-connect-delay-time", "1",
            "--health-address", health, *extra]


def gateway_item(name: str, address: str, *, protocol: str = "bgp", bfd: tuple[int, int, int] | None = (50, 50, 3),
                 hold_time: int | None = None, auth: tuple[str, str] | None = None, trench: str = "trench-a",
                 **extra: Any) -> dict[str, Any]:
    """One ``gateways`` item of the NSP's ConfigMap format; ``bfd`` is ``(min_rx, min_tx, multiplier)`` ms."""
    item: dict[str, Any] = {"name": name, "address": address, "protocol": protocol, "trench": trench,
                            "bfd": bfd is not None, **extra}
    if bfd is not None:
        item.update({"min-rx": bfd[0], "min-tx": bfd[1], "multiplier": bfd[2]})
    if hold_time is not None:
        item["hold-time"] = hold_time
    if auth is not None:
        item["bgp-auth"] = {"key": auth[0], "source": auth[1]}
    return item


def nsp_config(*, vips: Mapping[str, str], gateways: Sequence[Mapping[str, Any]], trench: str = "trench-a",
               attractor: str = "attr-a") -> str:
    """The NSP's configuration file (ConfigMap data) with one attractor using every VIP and gateway given."""
    data = {
        "trench": {"name": trench},
        "conduits": {"items": [{"name": "conduit-a", "trench": trench}]},
        "streams": {"items": [{"name": "stream-a", "conduit": "conduit-a", "max-targets": 100}]},
        "flows": {"items": []},
        "vips": {"items": [{"name": n, "address": a, "trench": trench} for n, a in vips.items()]},
        "attractors": {"items": [{"name": attractor, "vips": list(vips), "gateways": [g["name"] for g in gateways],
                                  "trench": trench}]},
        "gateways": {"items": [dict(g) for g in gateways]},
    }
    return str(yaml.safe_dump(data, sort_keys=False))


T = TypeVar("T")


def eventually(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until truthy; ``AssertionError`` naming ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        last = value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


def _health_serving(address: str, service: str = "", timeout: float = 0.5) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


class FeEnv:
    """Gateway + NSP + LB test doubles + frontend daemons on one segment, for tests and benchmarks.

    ``netns(name) -> full name`` creates a namespace the caller removes later; ``procs`` starts processes
    and stops them by pid (``tests/conftest.py``'s ``netns`` and ``procs`` fixtures have this shape).
    """

    def __init__(self, netns: Callable[[str], str], procs: Any, workdir: pathlib.Path, *, replicas: int = 1,
                 trench: str = "trench-a", attractor: str = "attr-a", fe_ipv4: bool = True) -> None:
        self.procs = procs
        self.workdir = workdir
        self.netns = netns
        self.trench, self.attractor = trench, attractor
        self.segment = build_segment(netns("gw"), [netns(f"fe{i}") for i in range(replicas)], fe_ipv4=fe_ipv4)
        self.lbs: list[LbAvailabilityDouble] = []
        self.frontends: dict[int, Any] = {}
        self.gateway: Any = None
        self.nsp: Any = None
        self.nsp_address = ""
        self.nsp_config_file = workdir / "nsp" / "configuration.yaml"

    # --- gateway ------------------------------------------------------------------------------

    @property
    def gw_socket(self) -> pathlib.Path:
        return self.workdir / "gw" / "bird.ctl"

    def start_gateway(self, cfg: gatewayconf.GatewayRouterConfig | None = None) -> Any:
        cfg = cfg or gateway_config(self.segment)
        (self.workdir / "gw").mkdir(exist_ok=True)
        conf = self.workdir / "gw" / "bird.conf"
        conf.write_text(gatewayconf.render(cfg))
        self.gateway = self.procs.start(["bird", "-f", "-c", str(conf), "-s", str(self.gw_socket)],
                                        ns=self.segment.gw_ns, name="gw-bird")
        eventually(lambda: self.gw_socket.exists(), 10, message="the gateway BIRD's control socket")
        return self.gateway

    SECOND_GW_V4, SECOND_GW_V6 = str(V4[254]), str(V6[254])

    def start_second_gateway(self) -> pathlib.Path:
        """Another gateway router (its own namespace and BIRD) on the segment at .254 / ::fe; returns its socket."""
        ns = self.gw2_ns = self.netns("gw2")
        _ip(None, "link", "add", "gw2", "netns", self.segment.gw_ns, "type", "veth", "peer", "name", "ext0",
            "netns", ns)
        _ip(self.segment.gw_ns, "link", "set", "gw2", "master", "br0", "up")
        netnsmod.run(ns, ["sysctl", "-qw", "net.ipv6.conf.ext0.keep_addr_on_down=1"])
        _ip(ns, "link", "set", "ext0", "up")
        _ip(ns, "addr", "add", f"{self.SECOND_GW_V4}/24", "dev", "ext0")
        _ip(ns, "addr", "add", f"{self.SECOND_GW_V6}/64", "dev", "ext0", "nodad")
        cfg = dataclasses.replace(gateway_config(self.segment), interface="ext0",
                                  router_id=ipaddress.IPv4Address(self.SECOND_GW_V4))
        (self.workdir / "gw2").mkdir(exist_ok=True)
        conf, sock = self.workdir / "gw2" / "bird.conf", self.workdir / "gw2" / "bird.ctl"
        conf.write_text(gatewayconf.render(cfg))
        self.procs.start(["bird", "-f", "-c", str(conf), "-s", str(sock)], ns=ns, name="gw2-bird")
        eventually(lambda: sock.exists(), 10, message="the second gateway's control socket")
        return sock

    def gw_bfd_up(self) -> set[str]:
        """Addresses of the FEs whose BFD session with the gateway is Up."""
        try:
            return {s.address for s in birdc.bfd_sessions(bird_command(self.gw_socket, "show bfd sessions"))
                    if s.state == "Up"}
        except OSError:
            return set()

    def gw_nexthops(self, prefix: str) -> set[str]:
        return nexthops(kernel_route(self.segment.gw_ns, prefix))

    # --- NSP ------------------------------------------------------------------------------------

    def start_nsp(self, config: str) -> str:
        base = self.workdir / "nsp"
        base.mkdir(exist_ok=True)
        self.write_nsp_config(config)
        sock = base / "nsp.sock"
        self.nsp = self.procs.meridio(
            "run", "nsp", "--listen-address", f"unix:{sock}", "--config-file",
            str(self.nsp_config_file), "--datasource", str(base / "registry.db"), "--config-poll-interval",
            "100ms", "--log-level", "DEBUG", name="nsp")
        self.nsp_address = f"unix:{sock}"
        eventually(lambda: _health_serving(self.nsp_address), 20, message="the NSP serving")
        return self.nsp_address

    def write_nsp_config(self, config: str) -> None:
        tmp = self.nsp_config_file.with_suffix(".tmp")
        tmp.write_text(config)
        tmp.replace(self.nsp_config_file)

    def frontend_targets(self) -> list[str]:
        """Identifiers of the FRONTEND targets registered in the NSP now."""
        with grpc.insecure_channel(self.nsp_address) as channel:
            stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
            call = stub.Watch(targetregistry_pb2.Target(type=targetregistry_pb2.Target.FRONTEND,
                                                        status=targetregistry_pb2.Target.ANY), timeout=5)
            first = next(iter(call))
            call.cancel()
            return sorted(t.context.get("identifier", "") for t in first.targets)

    # --- LB test doubles and frontends -----------------------------------------------------------

    def hostname(self, i: int) -> str:
        return f"fe-{i}"

    def fe_dir(self, i: int) -> pathlib.Path:
        return self.workdir / f"fe{i}"

    def fe_socket(self, i: int) -> pathlib.Path:
        return self.fe_dir(i) / "bird.ctl"

    def health_address(self, i: int) -> str:
        return f"unix:{self.fe_dir(i) / 'health.sock'}"

    def start_frontend(self, i: int = 0, *, extra: Sequence[str] = ()) -> Any:
        self.fe_dir(i).mkdir(exist_ok=True)
        while len(self.lbs) <= i:
            n = len(self.lbs)
            self.fe_dir(n).mkdir(exist_ok=True)
            self.lbs.append(LbAvailabilityDouble(self.fe_dir(n) / "lb.sock", self.hostname(n)).start())
        args = frontend_args(nsp=self.nsp_address, trench=self.trench, attractor=self.attractor,
                             hostname=self.hostname(i), lb_socket=self.lbs[i].address, run_dir=self.fe_dir(i),
                             health=self.health_address(i), extra=extra)
        self.frontends[i] = self.procs.meridio(*args, ns=self.segment.fe_nss[i], name=f"frontend{i}")
        return self.frontends[i]

    def fe_protocols(self, i: int = 0) -> dict[str, birdc.ProtocolInfo]:
        try:
            reply = bird_command(self.fe_socket(i), 'show protocols "NBR-*"')
        except OSError:
            return {}
        return {p.name: p for p in birdc.protocols(reply)}

    def established(self, i: int, *gateways: str) -> bool:
        protos = self.fe_protocols(i)
        return all("Established" in getattr(protos.get(f"NBR-{g}"), "info", "") for g in gateways)

    def fe_ready(self, i: int = 0) -> bool:
        return _health_serving(self.health_address(i), "Readiness")

    def fe_events(self, i: int = 0) -> list[dict[str, Any]]:
        out = []
        for line in self.procs.output(self.frontends[i]).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def fe_bird_pid(self, i: int = 0) -> int:
        starts = [e["pid"] for e in self.fe_events(i) if e.get("message") == "birdStarted"]
        assert starts, "the frontend has not started BIRD"
        return int(starts[-1])

    def close(self) -> None:
        for lb in self.lbs:
            lb.stop()
