"""Level-triggered reconciliation of the whole data path: identifier offsets, policy routes, nftables.

:meth:`Reconciler.reconcile` takes the complete desired state (:class:`Desired`, parsed values) and
makes the kernel match it, touching only what differs:

1. offsets: streams that went release their range, new streams reserve one (first fit);
2. routes: each candidate target gets ``ip rule fwmark X lookup X`` + ``default via <ip>`` in table X;
   a target whose gateway is not reachable yet stays *pending* (out of the Maglev table) and is
   retried on the next pass;
3. nftables: the ruleset with the *active* targets, as one batch. A batch the kernel refuses is
   retried flow by flow: a flow nftables rejects is logged and left out, everything else applies;
4. the eBPF fast path (when there is one, :mod:`fastpath`), written *before* the nftables batch of step 3
   (it carries the traffic: a target change takes effect when its table switched), with the flows
   nftables has not refused (again after the batch if it refused one); a fast path that cannot be written
   is taken off its interfaces (all traffic takes the nftables path) and rewritten on the next pass;
5. routes and rules of fwmarks no longer in use are removed (after nftables and the fast path stopped
   sending to them).

:meth:`Reconciler.start` reads back what a previous run left (nft table, rules, routes) without flushing
anything, so a restarted daemon changes nothing that is still wanted. Synchronous: the daemon runs
it in a worker thread; it is the only writer of the kernel state it owns.
"""
from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable

from meridio.common import log as logmod
from meridio.kernel import bpf, nftables
from meridio.loadbalancer import plan as planmod
from meridio.loadbalancer.datapath import ApplyResult, NftDataPath
from meridio.loadbalancer.fastpath import FastApplyResult, FastPath
from meridio.loadbalancer.flows import FlowSpec, Network, PortNatSpec, TargetSpec
from meridio.loadbalancer.offsets import OffsetAllocator
from meridio.loadbalancer.routing import TargetRouting
from meridio.loadbalancer.ruleset import LbConfig, StreamState, render, stream_map_name

__all__ = ["StreamInput", "Desired", "Report", "Reconciler"]


@dataclasses.dataclass(frozen=True)
class StreamInput:
    name: str
    max_targets: int
    targets: tuple[TargetSpec, ...] = ()
    """Candidate targets (valid identifiers, unique per stream)."""


@dataclasses.dataclass(frozen=True)
class Desired:
    vips: tuple[Network, ...] = ()
    streams: tuple[StreamInput, ...] = ()
    flows: tuple[FlowSpec, ...] = ()
    port_nats: tuple[PortNatSpec, ...] = ()


@dataclasses.dataclass(frozen=True)
class Report:
    active: dict[str, tuple[int, ...]]
    """stream -> identifiers in its Maglev table."""
    pending: dict[str, tuple[int, ...]]
    """stream -> identifiers whose route could not be installed yet."""
    rejected_flows: tuple[tuple[str, str, str], ...]
    """(stream, flow, nftables error) for flows left out."""
    apply: ApplyResult
    fastpath: FastApplyResult | None = None
    """What the fast path wrote (None: no fast path, or it failed and was detached)."""

    @property
    def has_targets(self) -> bool:
        return any(self.active.values())


class Reconciler:
    def __init__(self, datapath: NftDataPath, routing: TargetRouting, offsets: OffsetAllocator, *,
                 target_interface_prefix: str = "", fastpath: FastPath | None = None,
                 log: logmod.Logger = logmod.null) -> None:
        self.datapath = datapath
        self.fastpath = fastpath
        self.routing = routing
        self.offsets = offsets
        self.target_interface_prefix = target_interface_prefix
        self._log = log
        self._routes: dict[int, frozenset] = {}  # type: ignore[type-arg]
        self._applied_flows: frozenset[FlowSpec] = frozenset()
        self._rejected: dict[FlowSpec, str] = {}

    # --- start ------------------------------------------------------------------------------

    def start(self) -> None:
        """Read back the installed state and take back the offsets of the streams found in it."""
        installed = self.datapath.load()
        by_map = {name: planmod.stream_params(comment) for name, (comment, _) in installed.buckets.items()}
        self._restored_maps = {name: p for name, p in by_map.items() if {"offset", "max-targets"} <= set(p)}
        self._routes = self.routing.installed()
        if self.fastpath is not None:
            try:
                self.fastpath.start()
            except bpf.BpfError as exc:  # no libbpf, no object, no bpffs: nftables alone still forwards
                self._log.error("fastpathUnavailable", reason="startFailed", error=str(exc))
                self.fastpath.close()
                self.fastpath = None
        self._log.info("stateLoaded", streams=len(self._restored_maps), chains=len(installed.chains),
                       routedFwmarks=len(self._routes))

    def _restore_offset(self, stream: StreamInput) -> None:
        params = getattr(self, "_restored_maps", {}).get(stream_map_name(stream.name))
        if params and params["max-targets"] == stream.max_targets and self.offsets.offset_of(stream.name) is None:
            self.offsets.restore(stream.name, params["offset"], params["max-targets"])

    # --- reconcile --------------------------------------------------------------------------

    def reconcile(self, desired: Desired) -> Report:
        streams = self._offsets(desired.streams)
        self._routes = self.routing.installed()
        states, active, pending = self._route_targets(streams)
        config = LbConfig(vips=desired.vips, streams=tuple(states), flows=desired.flows,
                          port_nats=desired.port_nats, target_interface_prefix=self.target_interface_prefix)
        # The fast path first: it carries the traffic, so a target change takes effect as soon as its table
        # has switched; the nftables batch (slow at large M) follows. Written again if nftables refused a flow.
        refused_before = set(self._rejected)
        fast = self._apply_fast(config)
        result = self._apply(config)
        if set(self._rejected) != refused_before:
            fast = self._apply_fast(config)
        self._remove_unused_routes({s.fwmark(t.identifier) for s in states for t in s.targets})
        self._restored_maps = {}
        rejected = tuple(sorted((f.stream, f.name, err) for f, err in self._rejected.items()
                                if f in set(desired.flows)))
        return Report(active, pending, rejected, result, fast)

    def _offsets(self, streams: Iterable[StreamInput]) -> list[tuple[StreamInput, int]]:
        wanted = {s.name for s in streams}
        for name in list(self.offsets.reservations):
            if name not in wanted:
                self.offsets.release(name)
        out = []
        for stream in sorted(streams, key=lambda s: s.name):
            self._restore_offset(stream)
            out.append((stream, self.offsets.reserve(stream.name, stream.max_targets)))
        return out

    def _route_targets(self, streams: list[tuple[StreamInput, int]]
                       ) -> tuple[list[StreamState], dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        states, active, pending = [], {}, {}
        for stream, offset in streams:
            ok, waiting = [], []
            for target in sorted(stream.targets, key=lambda t: t.identifier):
                fwmark = offset + target.identifier
                if self.routing.add(fwmark, target.ips, self._routes):
                    ok.append(target)
                else:
                    waiting.append(target.identifier)
            states.append(StreamState(stream.name, stream.max_targets, offset, tuple(ok)))
            active[stream.name] = tuple(t.identifier for t in ok)
            pending[stream.name] = tuple(waiting)
        return states, active, pending

    def _remove_unused_routes(self, in_use: set[int]) -> None:
        for fwmark in sorted(set(self.routing.installed()) - in_use):
            self.routing.remove(fwmark)
        for table in self.routing.stray_tables(in_use):
            self.routing.remove_table(table)
        self._routes = self.routing.installed()

    def _apply(self, config: LbConfig) -> ApplyResult:
        flows = tuple(f for f in config.flows if f not in self._rejected)
        try:
            result = self.datapath.apply(render(dataclasses.replace(config, flows=flows)))
        except nftables.NftError as exc:
            self._log.error("nftRejected", reason="batchRefused", error=exc.error)
            result = self._apply_flow_by_flow(config, flows)
        self._applied_flows = frozenset(flows) - set(self._rejected)
        return result

    def _apply_fast(self, config: LbConfig) -> FastApplyResult | None:
        if self.fastpath is None:
            return None
        accepted = tuple(f for f in config.flows if f not in self._rejected)
        try:
            return self.fastpath.apply(dataclasses.replace(config, flows=accepted))
        except (bpf.BpfError, struct.error, ValueError) as exc:  # never the slow path's problem: it forwards
            self._log.error("fastpathFailed", reason="mapWriteFailed", error=str(exc))
            self.fastpath.detach()
            return None

    def _apply_flow_by_flow(self, config: LbConfig, flows: tuple[FlowSpec, ...]) -> ApplyResult:
        """Apply the previously accepted flows, then add each new flow in its own transaction."""
        accepted = [f for f in flows if f in self._applied_flows]
        result = self.datapath.apply(render(dataclasses.replace(config, flows=tuple(accepted))))
        for flow in (f for f in flows if f not in self._applied_flows):
            try:
                result = self.datapath.apply(render(dataclasses.replace(config, flows=tuple(accepted + [flow]))))
                accepted.append(flow)
            except nftables.NftError as exc:
                self._rejected[flow] = exc.error.splitlines()[0] if exc.error else str(exc)
                self._log.error("flowRejected", stream=flow.stream, flow=flow.name, reason="nftRefused",
                                error=exc.error)
        return result

    # --- verification -----------------------------------------------------------------------

    def lost_routes(self, report: Report, desired: Desired) -> list[int]:
        """fwmarks of active targets whose rule or route vanished (e.g. their link went down)."""
        installed = self.routing.installed()
        targets = {s.name: {t.identifier: t for t in s.targets} for s in desired.streams}
        lost = []
        for stream, ids in report.active.items():
            offset = self.offsets.offset_of(stream)
            if offset is None:
                continue
            for identifier in ids:
                target = targets.get(stream, {}).get(identifier)
                if target is not None and installed.get(offset + identifier) != frozenset(target.ips):
                    lost.append(offset + identifier)
        return lost
