"""Prometheus metrics for every component: one registry per process, served on ``/metrics``.

Conventions (the README lists every metric): names start with ``meridio_``, counters end in ``_total``,
durations are seconds, sizes are counts; labels are identifiers (a trench, a stream, a gateway name),
never lists of addresses. Nothing is written per packet: kernel counters are read when Prometheus
scrapes, and component state is read from what the component already keeps.

A component builds one :class:`Metrics`, adds *instruments* it updates as it works (histograms of
reconcile and apply durations, flap counters) and *collectors*: functions called at each scrape that
yield metric families from the component's state. The endpoint is a small asyncio HTTP server, so
collectors run on the component's own event loop and see consistent state (no thread reads a dict the
loop is changing); a ``refresh`` coroutine, awaited before each scrape, may fetch what needs I/O (nft
counters, interface statistics) off the loop::

    metrics = Metrics()
    reconcile = metrics.histogram("lb_reconcile_duration_seconds", "time to reconcile the kernel state")
    metrics.collect(lambda: lb_families(lb))
    endpoint = await metrics.serve(2223)
    ...
    await endpoint.close()
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from meridio.common import log as logmod

__all__ = ["PREFIX", "DURATION_BUCKETS", "Metrics", "Endpoint", "gauge", "counter", "interface_families", "Family",
           "MetricsError", "timed", "serve_or_log"]

PREFIX = "meridio_"
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: kernel and BIRD applies take from well under a millisecond to a few seconds."""

_MAX_REQUEST = 8192
_REQUEST_TIMEOUT_S = 5.0

Family = Metric

# No ``_created`` series: Prometheus 2 would store each as one more series per counter.
disable_created_metrics()  # type: ignore[no-untyped-call]


class MetricsError(ValueError):
    """A metrics endpoint or metric that cannot be set up (the message names the setting)."""


def gauge(name: str, help: str, labels: Sequence[str] = (), samples: Iterable[tuple[Sequence[str], float]] = ()
          ) -> GaugeMetricFamily:
    """A gauge family ``meridio_<name>`` with the given label names and ``(label values, value)`` samples."""
    family = GaugeMetricFamily(PREFIX + name, help, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def counter(name: str, help: str, labels: Sequence[str] = (), samples: Iterable[tuple[Sequence[str], float]] = ()
            ) -> CounterMetricFamily:
    """A counter family ``meridio_<name>_total`` (``name`` without the suffix) read from existing counts."""
    family = CounterMetricFamily(PREFIX + name, help, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


class _Counted(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def mac(self) -> str: ...


_INTERFACE_COUNTERS = (
    ("receive_packets", "rx_packets", "packets received"), ("receive_bytes", "rx_bytes", "bytes received"),
    ("receive_errors", "rx_errors", "receive errors"), ("receive_dropped", "rx_dropped", "received packets dropped"),
    ("transmit_packets", "tx_packets", "packets sent"), ("transmit_bytes", "tx_bytes", "bytes sent"),
    ("transmit_errors", "tx_errors", "transmit errors"), ("transmit_dropped", "tx_dropped", "packets dropped on send"),
)


def interface_families(stats: Iterable[_Counted], labels: Sequence[str], values: Sequence[str]) -> list[Metric]:
    """``meridio_interface_<receive|transmit>_<packets|bytes|errors|dropped>_total`` per interface.

    ``stats`` are objects with ``name``, ``mac`` and the ``rx_*``/``tx_*`` counts (``kernel.netlink``'s
    ``InterfaceStats``); ``labels``/``values`` say whose interfaces they are (e.g. trench, conduit), and
    each sample adds ``interface`` and ``mac`` (Meridio labels its interface metrics with both; the MAC
    is one value per interface, so no cardinality is added).
    """
    names = [*labels, "interface", "mac"]
    families = [counter(f"interface_{name}", f"Interface {text} (kernel counter)", names)
                for name, _, text in _INTERFACE_COUNTERS]
    for st in stats:
        row = [*values, st.name, st.mac]
        for family, (_, attr, _) in zip(families, _INTERFACE_COUNTERS):
            family.add_metric(row, float(getattr(st, attr)))
    return list(families)


class _FunctionCollector(Collector):
    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self._fn = fn

    def collect(self) -> Iterator[Metric]:
        yield from self._fn()


class Metrics:
    """A process's metrics: a private registry (no process-global state), its instruments and collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._refresh: list[Callable[[], Awaitable[None]]] = []

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DURATION_BUCKETS) -> Histogram:
        return Histogram(PREFIX + name, help, list(labels), registry=self.registry, buckets=list(buckets))

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, help, list(labels), registry=self.registry)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, help, list(labels), registry=self.registry)

    def collect(self, fn: Callable[[], Iterable[Metric]], *, refresh: Callable[[], Awaitable[None]] | None = None
                ) -> None:
        """Call ``fn`` at every scrape (on the event loop); ``refresh`` is awaited first, if given."""
        self.registry.register(_FunctionCollector(fn))
        if refresh is not None:
            self._refresh.append(refresh)

    async def render(self) -> bytes:
        """The exposition text, as a scrape gets it."""
        for refresh in self._refresh:
            await refresh()
        return generate_latest(self.registry)

    async def serve(self, port: int, host: str | None = None) -> Endpoint:
        """Listen for scrapes on ``host:port`` (None: every IPv4 and IPv6 address, one socket each)."""
        if not 0 <= port < 65536:
            raise MetricsError(f"metrics port: must be 1-65535 (0 = any free port), not {port}")
        try:
            server = await asyncio.start_server(self._handle, host, port, reuse_address=True,
                                                limit=_MAX_REQUEST)
        except OSError as exc:
            raise MetricsError(f"metrics port {port}: cannot listen on {host or 'every address'}: {exc.strerror}") from None
        return Endpoint(server, server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, ctype = await asyncio.wait_for(self._answer(reader), _REQUEST_TIMEOUT_S)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, bytes, str]:
        head = await reader.readuntil(b"\r\n\r\n")  # longer than the reader's limit: LimitOverrunError
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"only GET /metrics\n", "text/plain"
        path = parts[1].split(b"?", 1)[0]
        if path != b"/metrics":
            return "404 Not Found", b"only /metrics\n", "text/plain"
        body = await self.render()
        return "200 OK", (b"" if parts[0] == b"HEAD" else body), CONTENT_TYPE_PLAIN_0_0_4


@dataclasses.dataclass
class Endpoint:
    """A listening ``/metrics`` endpoint."""

    server: asyncio.Server
    port: int

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2.0)


@contextlib.contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    """Observe the duration of the ``with`` block (seconds) in ``histogram``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(*labels) if labels else histogram).observe(time.perf_counter() - start)


async def serve_or_log(m: Metrics, port: int, log: logmod.Logger, host: str | None = None) -> Endpoint | None:
    """Serve ``m`` on ``port``; a port that cannot be used is logged (``metricsNotServed``) and ``None``
    returned, so the component keeps working without metrics."""
    try:
        endpoint = await m.serve(port, host)
    except MetricsError as exc:
        log.error("metricsNotServed", error=str(exc))
        return None
    log.info("metricsServed", port=endpoint.port)
    return endpoint
