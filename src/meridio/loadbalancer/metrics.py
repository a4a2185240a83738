"""The load balancer's metrics: kernel counters read at scrape time, plus what the last reconcile did.

Families (labels ``trench``, ``conduit`` on all; ``stream``, ``flow``, ``identifier`` where they apply):

- ``meridio_lb_flow_matches_total``: packets a flow's rule matched (its nft named counter), Meridio's
  ``meridio.conduit.stream.flow.matches``;
- ``meridio_lb_target_hit_packets_total`` / ``..._bytes_total``: packets and bytes sent to a target
  (its ``tgt-<fwmark>`` counter), Meridio's ``meridio.conduit.stream.target.hit.*``; labelled by the
  target's identifier, not its addresses;
- ``meridio_lb_stream_targets`` / ``meridio_lb_stream_pending_targets``: targets in the stream's Maglev
  table, and those waiting for their route;
- ``meridio_lb_maglev_table_size``: buckets (M) of the stream's table;
- ``meridio_lb_maglev_last_change_buckets_moved``: buckets the stream's last table change pointed
  elsewhere, and ``meridio_lb_maglev_buckets_moved_total`` since start;
- ``meridio_lb_available``: 1 while the LB tells its frontend it can take traffic;
- ``meridio_lb_reconcile_duration_seconds`` and ``meridio_lb_nft_apply_duration_seconds`` histograms;
- ``meridio_interface_*_total`` for the LB's links to the conduit's proxies.

Counters come from the kernel in one ``list counters`` call per scrape plus the eBPF fast path's per-CPU
counters of the same flows and targets (added under the same names: a flow's count is what either path
matched), read off the event loop in :meth:`LbMetrics.refresh`; nothing is counted per packet in Python.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence

from meridio.common import metrics
from meridio.kernel import netlink
from meridio.loadbalancer import maglev
from meridio.loadbalancer.datapath import CounterValue
from meridio.loadbalancer.flows import FlowSpec
from meridio.loadbalancer.reconciler import Desired, Report
from meridio.loadbalancer.ruleset import flow_counter, stream_map_name, target_counter

__all__ = ["LbMetrics", "families"]


def families(*, trench: str, conduit: str, desired: Desired | None, report: Report | None,
             offsets: Mapping[str, int], counters: Mapping[str, CounterValue], moved: Mapping[str, int],
             moved_total: Mapping[str, int], available: bool) -> list[metrics.Family]:
    """Every LB family from plain state (pure: the unit tests call it with hand-made values)."""
    base = ["trench", "conduit"]
    ids = (trench, conduit)
    flows: Sequence[FlowSpec] = desired.flows if desired else ()
    streams = {s.name: s for s in desired.streams} if desired else {}
    active = report.active if report else {}
    pending = report.pending if report else {}
    zero = CounterValue(0, 0)
    flow_rows = [((*ids, f.stream, f.name), counters.get(flow_counter(f.stream, f.name), zero).packets)
                 for f in sorted(flows, key=lambda f: (f.stream, f.name))]
    hits = []
    for stream in sorted(active):
        offset = offsets.get(stream)
        if offset is None:
            continue
        for identifier in active[stream]:
            value = counters.get(target_counter(offset + identifier), zero)
            hits.append(((*ids, stream, str(identifier)), value))
    stream_labels = [*base, "stream"]
    names = sorted(streams)
    return [
        metrics.counter("lb_flow_matches", "Packets matched by the flow's rule (nft counter)",
                        [*base, "stream", "flow"], flow_rows),
        metrics.counter("lb_target_hit_packets", "Packets the LB sent to the target (nft counter)",
                        [*base, "stream", "identifier"], [(k, v.packets) for k, v in hits]),
        metrics.counter("lb_target_hit_bytes", "Bytes the LB sent to the target (nft counter)",
                        [*base, "stream", "identifier"], [(k, v.bytes) for k, v in hits]),
        metrics.gauge("lb_stream_targets", "Targets in the stream's Maglev table", stream_labels,
                      [((*ids, s), len(active.get(s, ()))) for s in names]),
        metrics.gauge("lb_stream_pending_targets", "Targets of the stream waiting for their route",
                      stream_labels, [((*ids, s), len(pending.get(s, ()))) for s in names]),
        metrics.gauge("lb_maglev_table_size", "Buckets (M) in the stream's Maglev table", stream_labels,
                      [((*ids, s), maglev.table_size(streams[s].max_targets)) for s in names]),
        metrics.gauge("lb_maglev_last_change_buckets_moved", "Buckets the stream's last table change pointed elsewhere",
                      stream_labels, [((*ids, s), moved.get(stream_map_name(s), 0)) for s in names]),
        metrics.counter("lb_maglev_buckets_moved", "Buckets moved by table changes since the LB started",
                        stream_labels, [((*ids, s), moved_total.get(stream_map_name(s), 0)) for s in names]),
        metrics.gauge("lb_available", "1 while the LB tells its frontend it can take traffic", base,
                      [(ids, 1.0 if available else 0.0)]),
    ]


class LbMetrics:
    """The LB's registry: the reconcile hook (:meth:`reconciled`) and the scrape-time collector."""

    def __init__(self, *, trench: str, conduit: str, state: Callable[[], tuple[Desired | None, Report | None, bool]],
                 offsets: Callable[[], Mapping[str, int]], counters: Callable[[], Mapping[str, CounterValue]],
                 interfaces: Callable[[], Iterable[netlink.InterfaceStats]], interface_prefix: str) -> None:
        self.metrics = metrics.Metrics()
        self.trench, self.conduit = trench, conduit
        self._state, self._offsets, self._read_counters, self._read_interfaces = state, offsets, counters, interfaces
        self._prefix = interface_prefix
        self._counters: Mapping[str, CounterValue] = {}
        self._interfaces: list[netlink.InterfaceStats] = []
        self._moved: dict[str, int] = {}
        self._moved_total: dict[str, int] = {}
        self.reconcile_seconds = self.metrics.histogram(
            "lb_reconcile_duration_seconds", "Time of one reconcile of offsets, routes and nftables",
            ["trench", "conduit"]).labels(trench, conduit)
        self.apply_seconds = self.metrics.histogram(
            "lb_nft_apply_duration_seconds", "Time of one nftables batch that changed something",
            ["trench", "conduit"]).labels(trench, conduit)
        self.metrics.collect(self._families, refresh=self.refresh)

    def reconciled(self, report: Report, seconds: float) -> None:
        """Record one reconcile (called by the owner task after each pass that ran)."""
        self.reconcile_seconds.observe(seconds)
        if report.apply.commands:
            self.apply_seconds.observe(report.apply.seconds)
        for name, count in report.apply.moved.items():
            self._moved[name] = count
            self._moved_total[name] = self._moved_total.get(name, 0) + count

    async def refresh(self) -> None:
        self._counters = await asyncio.to_thread(self._read_counters)
        stats = await asyncio.to_thread(self._read_interfaces)
        self._interfaces = [s for s in stats if s.name.startswith(self._prefix)]

    def _families(self) -> list[metrics.Family]:
        desired, report, available = self._state()
        out = families(trench=self.trench, conduit=self.conduit, desired=desired, report=report,
                       offsets=self._offsets(), counters=self._counters, moved=self._moved,
                       moved_total=self._moved_total, available=available)
        return out + metrics.interface_families(self._interfaces, ["trench", "conduit"],
                                                [self.trench, self.conduit])
