"""The dashboard's server: a poller that rebuilds the view every few seconds, and a small HTTP server.

:class:`Poller` is the one owner of the view and the traffic meter: every ``interval_s`` it asks the
runtime daemon for a snapshot and the resources, reads the LB pods' metrics through the injected
``metrics`` source (``pod -> Prometheus text or None``), and keeps the encoded view. The HTTP side only
reads that: ``GET /`` is the page (``page.html``, package data: plain HTML, inline SVG and script, no
external resource, a Content-Security-Policy that forbids any), ``GET /api/view`` the latest view as JSON.
Served on 127.0.0.1 unless told otherwise (``http.server`` in threads; the poller in one more).
"""
from __future__ import annotations

import dataclasses
import http.server
import importlib.resources
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from meridio.api import problems as pb
from meridio.api import resources
from meridio.cli.dashboard import traffic, view
from meridio.runtime.local import client
from meridio.runtime.local import protocol as proto
from meridio.runtime.local.layout import StateLayout

__all__ = ["CSP", "Poller", "Sources", "daemon_sources", "make_server", "page"]

CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
"""Only the page itself and its own JSON: the browser fetches nothing else."""


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the poller reads from (the runtime daemon in ``meridio dashboard``; fakes in tests)."""

    status: Callable[[], proto.Snapshot]
    """Raises :class:`client.DaemonUnavailable` or :class:`client.RequestFailed` when there is no answer."""
    objects: Callable[[], Sequence[resources.Resource]]
    metrics: Callable[[str], str | None]
    """One LB pod's Prometheus text (None: it does not answer)."""
    clock: Callable[[], float] = time.monotonic


def daemon_sources(layout: StateLayout) -> Sources:
    """The sources of a running environment: its daemon's status and resources, its pods' metrics."""
    def objects() -> Sequence[resources.Resource]:
        return resources.parse_documents(client.request(layout, proto.Resources(), timeout=10).items)
    return Sources(status=lambda: client.request(layout, proto.Status(), timeout=10), objects=objects,
                   metrics=lambda pod: client.pod_metrics(layout, pod, "lb"))


class Poller:
    def __init__(self, environment: str, sources: Sources) -> None:
        self._environment = environment
        self._sources = sources
        self._meter = traffic.Meter()
        self._lock = threading.Lock()
        self._body = self._encode(view.down(environment, "starting: no snapshot yet"))

    @staticmethod
    def _encode(v: view.View) -> bytes:
        return json.dumps({**view.to_json(v), "refreshed": time.time()}).encode()  # type: ignore[dict-item]

    def refresh(self) -> view.View:
        """Build a fresh view (a daemon that does not answer gives a view saying so) and keep it."""
        try:
            snap = self._sources.status()
            objs = self._sources.objects()
        except (client.DaemonUnavailable, client.RequestFailed, OSError, pb.ProblemsError) as exc:
            v = view.down(self._environment, f"no status from environment {self._environment!r}: {exc}")
        else:
            v = view.build(snap, objs, self._meter.update(self._samples(snap), self._sources.clock()))
        body = self._encode(v)
        with self._lock:
            self._body = body
        return v

    def _samples(self, snap: proto.Snapshot) -> dict[str, dict[traffic.TargetKey, traffic.Hits] | None]:
        out: dict[str, dict[traffic.TargetKey, traffic.Hits] | None] = {}
        for pod in (p.name for p in snap.pods if p.kind == view.FE_KIND and p.state == "Running"):
            text = self._sources.metrics(pod)
            try:
                out[pod] = None if text is None else traffic.target_hits(text)
            except ValueError:
                out[pod] = None
        return out

    def latest(self) -> bytes:
        with self._lock:
            return self._body

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Refresh every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            started = self._sources.clock()
            self.refresh()
            stop.wait(max(0.0, interval_s - (self._sources.clock() - started)))


def page() -> bytes:
    return importlib.resources.files("meridio.cli.dashboard").joinpath("page.html").read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", self.server.page)
        elif path == "/api/view":
            self._send(200, "application/json", self.server.poller.latest())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def do_HEAD(self) -> None:  # noqa: N802 (same)
        self.do_GET()

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # one line per request every 2 s is noise


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], poller: Poller, body: bytes) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.poller = poller
        self.page = body


def make_server(host: str, port: int, poller: Poller) -> http.server.ThreadingHTTPServer:
    """An HTTP server bound to ``host:port`` (port 0: any free one; see ``server_address``)."""
    return _Server((host, port), poller, page())
