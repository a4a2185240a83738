"""What the LB daemon knows from the NSP, and the desired data path derived from it (pure, sans-IO).

The watchers put each full list they receive into :class:`Inputs`; :meth:`Inputs.desired` turns the
whole picture into a :class:`~reconciler.Desired` plus the problems found (bad flows, VIPs, port NATs,
targets), each skipped on its own. Nothing is programmed before every watch has delivered once
(:meth:`Inputs.ready`): a restarted daemon must not tear down what it cannot see yet.

Blocking (reference §3.5): the LB forwards only while the collocated frontend's FRONTEND target
(identifier == this host's name) is registered; without it the data path is emptied (no streams, no
flows, no targets) and the availability service reports "unavailable".
"""
from __future__ import annotations

import dataclasses

from meridio.api import model
from meridio.loadbalancer import flows as fl
from meridio.loadbalancer.reconciler import Desired, StreamInput

__all__ = ["Inputs", "DEFAULT_MAX_TARGETS"]

DEFAULT_MAX_TARGETS = 100
"""Used when a stream says 0 (older NSPs), as Meridio's TAPA does."""


@dataclasses.dataclass
class Inputs:
    hostname: str
    vips: list[model.Vip] | None = None
    conduit_known: bool = False
    conduit: model.Conduit | None = None
    streams: list[model.Stream] | None = None
    flows: dict[str, list[model.Flow]] = dataclasses.field(default_factory=dict)
    targets: dict[str, list[model.Target]] = dataclasses.field(default_factory=dict)
    frontends: list[model.Target] | None = None

    # --- updates from the watchers --------------------------------------------------------------

    def set_streams(self, streams: list[model.Stream]) -> tuple[set[str], set[str]]:
        """Store the stream list; returns (streams added, streams removed) by name."""
        old = {s.name for s in self.streams or []}
        new = {s.name for s in streams}
        self.streams = sorted(streams, key=lambda s: s.name)
        for gone in old - new:
            self.flows.pop(gone, None)
            self.targets.pop(gone, None)
        return new - old, old - new

    def set_conduit(self, conduits: list[model.Conduit], name: str) -> None:
        self.conduit_known = True
        self.conduit = next((c for c in conduits if c.name == name), None)

    # --- derived state --------------------------------------------------------------------------

    def ready(self) -> bool:
        """Every watch delivered at least once (streams: their flows and targets too)."""
        if self.vips is None or not self.conduit_known or self.streams is None or self.frontends is None:
            return False
        return all(s.name in self.flows and s.name in self.targets for s in self.streams)

    def blocked(self) -> bool:
        """No FRONTEND target with our hostname as identifier (its frontend has no connectivity)."""
        return not any(t.type == model.TargetType.FRONTEND and t.identifier == self.hostname
                       for t in self.frontends or [])

    def desired(self) -> tuple[Desired, list[fl.InputError]]:
        problems: list[fl.InputError] = []
        vips = self._vips(problems)
        if self.blocked():
            return Desired(vips=vips), problems
        streams = [self._stream(s, problems) for s in self.streams or []]
        flows = []
        for stream in self.streams or []:
            for flow in self.flows.get(stream.name, []):
                try:
                    flows.append(fl.flow_spec(dataclasses.replace(flow, stream=stream)))
                except fl.InputError as exc:
                    problems.append(exc)
        return Desired(vips=vips, streams=tuple(streams), flows=tuple(flows), port_nats=self._nats(problems)), problems

    def _vips(self, problems: list[fl.InputError]) -> tuple[fl.Network, ...]:
        nets = []
        for vip in self.vips or []:
            try:
                nets.append(fl.parse_network(vip.address))
            except ValueError as exc:
                problems.append(fl.InputError("vip", vip.name, "address", str(exc)))
        return tuple(sorted(set(nets), key=lambda n: (n.version, n)))

    def _nats(self, problems: list[fl.InputError]) -> tuple[fl.PortNatSpec, ...]:
        nats = []
        for nat in self.conduit.destination_port_nats if self.conduit else ():
            if not nat.vips:  # nsp.v1: "If the VIP is nil then any VIP will be considered"
                nat = dataclasses.replace(nat, vips=tuple(self.vips or ()))
            try:
                nats.append(fl.port_nat_spec(self.conduit.name, nat))  # type: ignore[union-attr]
            except fl.InputError as exc:
                problems.append(exc)
        return tuple(nats)

    def _stream(self, stream: model.Stream, problems: list[fl.InputError]) -> StreamInput:
        max_targets = stream.max_targets or DEFAULT_MAX_TARGETS
        chosen: dict[int, fl.TargetSpec] = {}
        for target in sorted(self.targets.get(stream.name, []), key=lambda t: t.ips):
            if target.type != model.TargetType.DEFAULT or target.status != model.TargetStatus.ENABLED:
                continue
            try:
                spec = fl.target_spec(target, max_targets)
            except fl.InputError as exc:
                problems.append(exc)
                continue
            if spec.identifier in chosen:
                problems.append(fl.InputError("target", ",".join(target.ips), "context identifier",
                                              f"{spec.identifier} is already used in stream {stream.name!r}"))
                continue
            chosen[spec.identifier] = spec
        return StreamInput(stream.name, max_targets, tuple(chosen[i] for i in sorted(chosen)))
