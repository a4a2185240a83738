"""The runtime's HTTP endpoint on loopback: its own metrics, every pod's metrics, and a Prometheus beside it.

``GET /metrics``: the runtime's families (process up and restarts, per pod and component) and the
emulated gateways' (BGP and BFD sessions with each frontend, VIP routes), read from their BIRD at scrape.
``GET /pods/<pod>/<component>/metrics``: that process's ``/metrics``, fetched through a connection made
inside the pod's namespace (see :mod:`scrape`); 404 for an unknown pod or component, 502 when it does
not answer. Only 127.0.0.1 is listened on; requests are bounded (size, time) and answers too.

With ``monitoring.prometheus`` the environment gets Debian's ``prometheus`` as a supervised process in
the host namespace, listening on 127.0.0.1 only, with its data under the state directory; the targets
file it reads is rewritten (atomically, only when it changes) as pods come and go. The chosen ports are
kept in ``monitoring.json`` so a restarted daemon serves on the same ones and adopts the same Prometheus.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

from meridio.common import log as logmod
from meridio.common import metrics
from meridio.kernel import netns
from meridio.runtime.local import protocol as proto
from meridio.runtime.local import scrape
from meridio.runtime.local.environment import Monitoring
from meridio.runtime.local.layout import StateLayout
from meridio.runtime.local.pods import PodSpec
from meridio.runtime.local.supervisor import ProcessSpec, ProcessState, ProcessStatus

__all__ = ["Monitor", "MonitorError", "PROMETHEUS", "runtime_families", "gateway_families", "fetch"]

PROMETHEUS = "/usr/bin/prometheus"
HOST = "127.0.0.1"
_MAX_REQUEST = 8192
_MAX_ANSWER = 16 * 1024 * 1024
_TIMEOUT_S = 5.0


class MonitorError(Exception):
    """The monitoring endpoint or Prometheus cannot be set up (the message says what to do)."""


def gateway_families(routers: Iterable[proto.Router]) -> list[metrics.Family]:
    """The emulated gateways' view (what an operator's own routers would export): per router and
    frontend neighbour, BGP Established and BFD Up as 0/1, and the VIP routes in the router's kernel."""
    sessions = [(r.name, s) for r in sorted(routers, key=lambda r: r.name) for s in r.sessions]
    labels = ["router", "trench", "neighbor"]
    trench = {r.name: r.trench for r in routers}
    return [
        metrics.gauge("gateway_bgp_session_up", "1 while the gateway's BGP session with the frontend is Established",
                      labels, [((n, trench[n], s.neighbor), 1.0 if s.info.startswith("Established") else 0.0)
                               for n, s in sessions]),
        metrics.gauge("gateway_bfd_session_up", "1 while the gateway's BFD session with the frontend is Up",
                      labels, [((n, trench[n], s.neighbor), 1.0 if s.bfd == "Up" else 0.0)
                               for n, s in sessions if s.bfd]),
        metrics.gauge("gateway_vip_routes", "VIP routes BIRD installed in the gateway's kernel", ["router", "trench"],
                      [((r.name, r.trench), len(r.routes)) for r in sorted(routers, key=lambda r: r.name)]),
    ]


def runtime_families(statuses: Iterable[ProcessStatus]) -> list[metrics.Family]:
    """``meridio_runtime_process_up`` and ``meridio_runtime_process_restarts_total`` per process."""
    rows = sorted(statuses, key=lambda s: (s.pod, s.component))
    return [
        metrics.gauge("runtime_process_up", "1 while the supervised process runs", ["pod", "component"],
                      [((s.pod, s.component), 1.0 if s.state is ProcessState.RUNNING else 0.0) for s in rows]),
        metrics.counter("runtime_process_restarts", "Restarts of the supervised process by the runtime",
                        ["pod", "component"], [((s.pod, s.component), s.restarts) for s in rows]),
    ]


async def fetch(netns_name: str, port: int, path: str = "/metrics") -> tuple[int, bytes]:
    """GET ``path`` from ``127.0.0.1:port`` inside ``netns_name``: (HTTP status, body)."""
    sock = await asyncio.to_thread(netns.connect, netns_name, HOST, port, _TIMEOUT_S)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=_MAX_ANSWER)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(_MAX_ANSWER + 1), _TIMEOUT_S)
        while data and len(data) <= _MAX_ANSWER:
            more = await asyncio.wait_for(reader.read(_MAX_ANSWER + 1 - len(data)), _TIMEOUT_S)
            if not more:
                break
            data += more
    finally:
        writer.close()
    if len(data) > _MAX_ANSWER:
        raise OSError(f"answer longer than {_MAX_ANSWER} bytes")
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError("not an HTTP answer")
    return int(parts[1]), body


class Monitor:
    """Serves the endpoint for one environment; knows the pods through ``pods`` and ``statuses``."""

    def __init__(self, settings: Monitoring, layout: StateLayout, environment: str, *,
                 pods: Callable[[], Iterable[PodSpec]], statuses: Callable[[], Iterable[ProcessStatus]],
                 routers: Callable[[], Awaitable[Sequence[proto.Router]]] | None = None,
                 log: logmod.Logger = logmod.null) -> None:
        self.settings, self.layout, self.environment, self.log = settings, layout, environment, log
        self._pods, self._statuses, self._read_routers = pods, statuses, routers
        self._routers: Sequence[proto.Router] = ()
        self.metrics = metrics.Metrics()
        self.metrics.collect(lambda: runtime_families(self._statuses()) + gateway_families(self._routers),
                             refresh=self._refresh_routers)
        self.port = 0
        self.prometheus_port = 0
        self._server: asyncio.Server | None = None
        self._targets_text = ""

    # ------------------------------------------------------------------ endpoint

    async def start(self) -> None:
        saved = self._saved_ports()
        wanted = self.settings.port or saved.get("port", 0)
        try:
            self._server = await asyncio.start_server(self._handle, HOST, wanted, limit=_MAX_REQUEST)
        except OSError:
            if not wanted or self.settings.port:
                raise MonitorError(f"monitoring.port: cannot listen on {HOST}:{wanted}") from None
            self._server = await asyncio.start_server(self._handle, HOST, 0, limit=_MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]
        self.prometheus_port = self.settings.prometheus_port or saved.get("prometheus", 0) or _free_port()
        self._save_ports()
        self.log.info("monitoringServed", address=f"{HOST}:{self.port}",
                      prometheus=f"{HOST}:{self.prometheus_port}" if self.settings.prometheus else None)

    async def _refresh_routers(self) -> None:
        if self._read_routers is not None:
            self._routers = await self._read_routers()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def _saved_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self.layout.monitoring_file.read_text())
            return {k: int(v) for k, v in data.items() if k in ("port", "prometheus")}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_ports(self) -> None:
        _write_atomically(self.layout.monitoring_file, json.dumps(
            {"port": self.port, "prometheus": self.prometheus_port if self.settings.prometheus else 0}) + "\n")

    def scrape_targets(self) -> list[scrape.ScrapeTarget]:
        pods = {p.name: p for p in self._pods()}
        procs = []
        for st in self._statuses():
            pod = pods.get(st.pod)
            if pod is not None:
                labels = {"node": pod.node} if pod.node else {}  # the families carry trench etc. themselves
                procs.append((st.pod, st.component, pod.netns, labels))
        return scrape.targets(procs)

    async def pod_metrics(self, pod: str, component: str) -> tuple[int, bytes]:
        target = next((t for t in self.scrape_targets() if t.pod == pod and t.component == component), None)
        if target is None:
            return 404, f"no pod {pod!r} with a component {component!r} that serves metrics\n".encode()
        try:
            return await fetch(target.netns, target.port)
        except (OSError, TimeoutError) as exc:
            return 502, f"{pod}/{component} did not answer on port {target.port}: {exc}\n".encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _TIMEOUT_S)
            status, body = await self._route(head.split(b"\r\n", 1)[0].decode("latin-1").split())
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        ctype = "text/plain; version=0.0.4; charset=utf-8"
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 502: "Bad Gateway"}.get(status, "")
        with contextlib.suppress(ConnectionError):
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        writer.close()

    async def _route(self, request: list[str]) -> tuple[int, bytes]:
        if len(request) != 3 or request[0] != "GET":
            return 405, b"only GET\n"
        parts = request[1].split("?", 1)[0].strip("/").split("/")
        if parts == ["metrics"]:
            return 200, await self.metrics.render()
        if len(parts) == 4 and parts[0] == "pods" and parts[3] == "metrics":
            return await self.pod_metrics(parts[1], parts[2])
        return 404, b"paths: /metrics, /pods/<pod>/<component>/metrics\n"

    # ------------------------------------------------------------------ prometheus

    def prometheus_process(self) -> ProcessSpec | None:
        """Debian's Prometheus for this environment, or None when ``monitoring.prometheus`` is off."""
        if not self.settings.prometheus:
            return None
        binary = shutil.which("prometheus") or PROMETHEUS
        if not os.path.exists(binary):
            raise MonitorError("monitoring.prometheus: no prometheus binary (install Debian's package: "
                               "apt-get install prometheus)")
        base = self.layout.prometheus_dir
        (base / "data").mkdir(parents=True, exist_ok=True)
        config = base / "prometheus.yml"
        _write_atomically(config, scrape.prometheus_config(
            runtime_address=f"{HOST}:{self.port}", targets_file=str(base / "targets.json"),
            interval_s=self.settings.scrape_interval_s, environment=self.environment))
        self.write_targets()
        return ProcessSpec(
            pod="prometheus", component="prometheus", log_path=self.layout.log("prometheus", "prometheus"),
            argv=(binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
                  f"--web.listen-address={HOST}:{self.prometheus_port}", "--storage.tsdb.retention.time=1d",
                  "--web.enable-lifecycle"), stop_timeout_s=10.0)

    def write_targets(self) -> bool:
        """Rewrite Prometheus's targets file if the pods changed; True if it was written."""
        text = scrape.file_sd(self.scrape_targets(), f"{HOST}:{self.port}")
        if text == self._targets_text:
            return False
        _write_atomically(self.layout.prometheus_dir / "targets.json", text)
        self._targets_text = text
        return True

    async def keep_targets(self, interval_s: float = 2.0) -> None:
        while True:
            if self.settings.prometheus:
                self.write_targets()
            await asyncio.sleep(interval_s)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _write_atomically(path: os.PathLike[str], text: str) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
