"""The proxy's Prometheus metrics (``NSM_METRICS_ENABLED``, ``/metrics`` on ``NSM_METRICS_PORT``, 2227).

Families, all labelled ``trench`` and ``conduit``:

- ``meridio_proxy_lb_peers``: LB replicas announcing themselves for the conduit in NSP;
- ``meridio_proxy_lb_links``: links from bridge0 to those replicas that are up (egress next hops);
- ``meridio_proxy_target_links``: links into target namespaces (one per connected TAPA);
- ``meridio_proxy_egress_ready``: 1 while egress is possible (at least one LB link: readiness ``Egress``);
- ``meridio_proxy_reconcile_duration_seconds{input}``: time to apply one input to the kernel (``lbTargets``,
  ``vips``, ``flows`` from NSP, the periodic ``check`` and ``renew``), waiting for the forwarder included;
- ``meridio_interface_*_total``: kernel counters of bridge0 and of the proxy's ends of every LB and
  target link (:func:`meridio.common.metrics.interface_families`), read in one netlink dump per scrape
  off the event loop.
"""
from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Iterable

from meridio.common import log as logmod
from meridio.common import metrics
from meridio.kernel import netlink
from meridio.proxy import dataplane
from meridio.proxy.forwarder import Forwarder

__all__ = ["ProxyMetrics", "families", "own_interfaces"]

_BASE = ["trench", "conduit"]


def families(*, trench: str, conduit: str, lb_peers: int, lb_links: int, target_links: int, ready: bool
             ) -> list[metrics.Family]:
    """The proxy's state families from plain values (pure: the unit tests call it directly)."""
    ids = (trench, conduit)
    return [
        metrics.gauge("proxy_lb_peers", "LB replicas announced for the conduit in NSP", _BASE, [(ids, lb_peers)]),
        metrics.gauge("proxy_lb_links", "Links from bridge0 to LB replicas that are up", _BASE, [(ids, lb_links)]),
        metrics.gauge("proxy_target_links", "Links from bridge0 into target namespaces", _BASE,
                      [(ids, target_links)]),
        metrics.gauge("proxy_egress_ready", "1 while egress is possible (at least one LB link)", _BASE,
                      [(ids, 1.0 if ready else 0.0)]),
    ]


def own_interfaces(stats: Iterable[netlink.InterfaceStats], names: Collection[str]
                   ) -> list[netlink.InterfaceStats]:
    """The counters of ``names`` (bridge0 and the link ports), sorted by name; others are not the proxy's."""
    return sorted((s for s in stats if s.name in names), key=lambda s: s.name)


class ProxyMetrics:
    """The proxy's registry: the reconcile histogram, the state collector and the interface counters."""

    def __init__(self, fwd: Forwarder, *, trench: str, conduit: str, bridge: str,
                 read_stats: Callable[[], Awaitable[list[netlink.InterfaceStats]]],
                 log: logmod.Logger = logmod.null) -> None:
        self.metrics = metrics.Metrics()
        self._fwd, self._bridge, self._read_stats, self._log = fwd, bridge, read_stats, log
        self.trench, self.conduit = trench, conduit
        self._stats: list[netlink.InterfaceStats] = []
        self._reconcile = self.metrics.histogram(
            "proxy_reconcile_duration_seconds", "Time to apply one input to the proxy's kernel state",
            [*_BASE, "input"])
        self.metrics.collect(self._families, refresh=self.refresh)

    def timed(self, what: str) -> contextlib.AbstractContextManager[None]:
        """A context manager observing one apply of input ``what``."""
        return metrics.timed(self._reconcile, self.trench, self.conduit, what)

    async def refresh(self) -> None:
        try:
            stats = await self._read_stats()
        except dataplane.KernelError as exc:
            self._log.debug("interfaceStatsFailed", error=str(exc))
            return  # the last counters are served again
        names = {self._bridge, *(link.port for link in self._fwd.lb.links.values()),
                 *(link.port for link in self._fwd.targets.links.values())}
        self._stats = own_interfaces(stats, names)

    def _families(self) -> list[metrics.Family]:
        fwd = self._fwd
        out = families(trench=self.trench, conduit=self.conduit, lb_peers=len(fwd.lb.peers),
                       lb_links=len(fwd.lb.links), target_links=len(fwd.targets.links), ready=fwd.ready)
        return out + metrics.interface_families(self._stats, _BASE, [self.trench, self.conduit])
