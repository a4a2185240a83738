"""The dashboard's view model: one status snapshot, the resources and the target rates → what the page draws.

Pure (:func:`build`): no daemon, no clock. Every element carries a :class:`State`, computed here so the
page only paints: ``up`` (green: running, established, enabled, open), ``down`` (red) or ``idle`` (grey:
nothing to judge yet, e.g. a pod that cannot be scheduled or a gateway with no FE on its segment).

The topology is a graph with names as references: a trench has attractors (their FE+LB replicas and the
conduits they serve), conduits (their proxies and streams), streams (the targets the NSP registered, with
their traffic, and the target pods whose TAPA has the stream) and gateways (their BGP/BFD sessions, one
per FE address on the gateway's segment that the gateway peers with: a session that the gateway does not
list, as after a BFD timeout removes a dynamic BGP neighbour, is shown down as ``no session``). An FE+LB
replica is up when its processes run and every session with it is established with BFD up.
"""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from meridio.api import resources
from meridio.cli.dashboard import traffic
from meridio.runtime.local import protocol as proto

__all__ = ["AttractorView", "ConduitView", "GatewayView", "PodView", "SessionView", "State", "StreamView",
           "TapView", "TargetView", "TrenchView", "View", "build", "down", "to_json"]

FE_KIND = "stateless-lb-frontend"

K = TypeVar("K", bound=resources.Resource)


class State(enum.Enum):
    UP = "up"
    DOWN = "down"
    IDLE = "idle"


def worst(states: Iterable[State], empty: State = State.UP) -> State:
    """Down if anything is down, else up if anything is up, else ``empty``."""
    seen = set(states)
    return State.DOWN if State.DOWN in seen else State.UP if State.UP in seen else empty


@dataclasses.dataclass(frozen=True)
class PodView:
    name: str
    kind: str
    node: str
    trench: str
    status: str
    """The runtime's pod state: ``Running``, ``NotReady``, ``Failed``, ``Pending`` or ``Blocked``."""
    state: State
    reason: str
    restarts: int
    addresses: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SessionView:
    """A gateway's BGP session with one FE address, and the BFD session beside it."""

    id: str
    """``<router>/<neighbor>``: stable across refreshes."""
    router: str
    neighbor: str
    frontend: str
    """The FE+LB pod with that address ("" if no pod of this environment has it)."""
    bgp: str
    bfd: str
    state: State


@dataclasses.dataclass(frozen=True)
class GatewayView:
    name: str
    network: str
    state: State
    sessions: tuple[SessionView, ...]
    routes: tuple[tuple[str, tuple[str, ...]], ...]
    """VIP routes in the gateway's kernel: (destination, next hops)."""


@dataclasses.dataclass(frozen=True)
class TargetView:
    """A target as the NSP registered it, with its traffic summed over the LB pods."""

    id: str
    """``<trench>/<conduit>/<stream>/<identifier>``."""
    identifier: str
    ips: tuple[str, ...]
    status: str
    state: State
    packets_per_s: float | None
    bytes_per_s: float | None
    packets: float | None
    """Packets the LBs sent to it so far (None: no LB answered with metrics)."""


@dataclasses.dataclass(frozen=True)
class TapView:
    """A target pod's view of one stream (its TAPA status)."""

    pod: str
    status: str
    state: State


@dataclasses.dataclass(frozen=True)
class StreamView:
    name: str
    state: State
    targets: tuple[TargetView, ...]
    pods: tuple[TapView, ...]


@dataclasses.dataclass(frozen=True)
class ConduitView:
    name: str
    state: State
    proxies: tuple[str, ...]
    streams: tuple[StreamView, ...]


@dataclasses.dataclass(frozen=True)
class AttractorView:
    name: str
    state: State
    replicas: tuple[str, ...]
    conduits: tuple[str, ...]
    vips: tuple[str, ...]
    gateways: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TrenchView:
    name: str
    state: State
    pods: tuple[str, ...]
    """The trench's NSP and IPAM pods."""
    nsp_answers: bool
    attractors: tuple[AttractorView, ...]
    conduits: tuple[ConduitView, ...]
    gateways: tuple[GatewayView, ...]


@dataclasses.dataclass(frozen=True)
class View:
    environment: str
    state: State
    not_ready: tuple[str, ...]
    """Why the environment is not ready (the runtime's readiness reasons and problems); empty: ready."""
    pods: tuple[PodView, ...]
    trenches: tuple[TrenchView, ...]
    error: str = ""
    """Why there is no fresh snapshot (the daemon does not answer); the rest is then empty."""


# --------------------------------------------------------------------------- building


def _session_up(s: proto.Session) -> bool:
    return s.info.startswith("Established") and s.bfd in ("", "Up")


def _family(addr: str) -> int:
    try:
        return ipaddress.ip_address(addr).version
    except ValueError:
        return 0


def _gateway(r: proto.Router, frontends: Sequence[proto.Pod]) -> GatewayView:
    on_segment = [p for p in frontends if p.network == r.network]
    owner = {a: p.name for p in on_segment for a in p.addresses}
    listed = {s.neighbor: s for s in r.sessions}
    expected = [a for p in on_segment for a in p.addresses if _family(a) in r.families]
    sessions = []
    for addr in sorted(set(expected) | set(listed), key=lambda a: (_family(a), a)):
        s = listed.get(addr)
        bgp, bfd = (" ".join((s.info or s.state).split()), s.bfd) if s else ("no session", "")
        if s and _session_up(s):
            state = State.UP
        elif addr not in owner:  # BIRD keeps a dynamic peer of a deleted FE as a down protocol: not a fault
            state = State.IDLE
        else:
            state = State.DOWN
        sessions.append(SessionView(id=f"{r.name}/{addr}", router=r.name, neighbor=addr, frontend=owner.get(addr, ""),
                                    bgp=bgp, bfd=bfd, state=state))
    return GatewayView(name=r.name, network=r.network, state=worst((s.state for s in sessions), State.IDLE),
                       sessions=tuple(sessions), routes=tuple(sorted(r.routes.items())))


def _pod(p: proto.Pod, sessions: Sequence[SessionView]) -> PodView:
    restarts = sum(c.restarts for c in p.containers)
    if p.state == "Pending":
        state, reason = State.IDLE, p.reason
    elif p.state != "Running":
        state, reason = State.DOWN, p.reason or p.state
    else:
        broken = [s for s in sessions if s.frontend == p.name and s.state is State.DOWN]
        state = State.DOWN if broken else State.UP
        reason = "; ".join(f"{s.router}: {s.neighbor} {s.bgp}" + (f", BFD {s.bfd}" if s.bfd else "") for s in broken)
    return PodView(name=p.name, kind=p.kind, node=p.node, trench=p.trench, status=p.state, state=state, reason=reason,
                   restarts=restarts, addresses=p.addresses)


def _target(trench: str, t: proto.RegisteredTarget, rates: Mapping[traffic.TargetKey, traffic.Rate]) -> TargetView:
    key = traffic.TargetKey(trench, t.conduit, t.stream, t.identifier)
    rate = rates.get(key)
    return TargetView(id="/".join((trench, t.conduit, t.stream, t.identifier)), identifier=t.identifier, ips=t.ips,
                      status=t.status, state=State.UP if t.status == "ENABLED" else State.DOWN,
                      packets_per_s=rate.packets_per_s if rate else None, bytes_per_s=rate.bytes_per_s if rate else None,
                      packets=rate.packets if rate else None)


def _streams(trench: str, conduit: str, names: Sequence[str], snap: proto.Snapshot,
             rates: Mapping[traffic.TargetKey, traffic.Rate]) -> tuple[StreamView, ...]:
    registered = snap.streams.get(trench)
    out = []
    for name in names:
        targets = tuple(_target(trench, t, rates) for t in registered or ()
                        if t.conduit == conduit and t.stream == name)
        taps = tuple(TapView(pod=pod, status=s.status, state=State.UP if s.status == "OPEN" else State.DOWN)
                     for pod, statuses in sorted(snap.targets.items()) for s in statuses or ()
                     if (s.trench, s.conduit, s.stream) == (trench, conduit, name))
        state = State.DOWN if registered is None else worst([t.state for t in targets] + [t.state for t in taps],
                                                           State.IDLE)
        out.append(StreamView(name=name, state=state, targets=tuple(sorted(targets, key=_identifier_order)),
                              pods=taps))
    return tuple(out)


def _identifier_order(t: TargetView) -> tuple[int, str]:
    return (int(t.identifier), "") if t.identifier.isdigit() else (1 << 31, t.identifier)


def _of(objs: Sequence[resources.Resource], kind: type[K], trench: str) -> list[K]:
    return sorted((o for o in objs if isinstance(o, kind) and o.trench == trench), key=lambda o: o.name)


def _trench(name: str, objs: Sequence[resources.Resource], snap: proto.Snapshot, pods: Mapping[str, PodView],
            gateways: Sequence[GatewayView], rates: Mapping[traffic.TargetKey, traffic.Rate]) -> TrenchView:
    in_trench = [p for p in snap.pods if p.trench == name]
    streams = _of(objs, resources.Stream, name)
    conduits = tuple(
        ConduitView(name=c.name, state=worst((pods[p.name].state for p in in_trench if p.conduit == c.name), State.IDLE),
                    proxies=tuple(p.name for p in in_trench if p.conduit == c.name),
                    streams=_streams(name, c.name, [s.name for s in streams if s.spec.conduit == c.name], snap, rates))
        for c in _of(objs, resources.Conduit, name))
    attractors = tuple(
        AttractorView(name=a.name, state=worst((pods[p.name].state for p in in_trench if p.attractor == a.name),
                                               State.IDLE),
                      replicas=tuple(p.name for p in in_trench if p.attractor == a.name), conduits=a.spec.composites,
                      vips=a.spec.vips, gateways=a.spec.gateways)
        for a in _of(objs, resources.Attractor, name))
    own = tuple(p.name for p in in_trench if not p.attractor and not p.conduit)
    nsp_answers = snap.streams.get(name) is not None
    parts = [pods[p].state for p in own] + [a.state for a in attractors] + [c.state for c in conduits]
    parts += [g.state for g in gateways]
    return TrenchView(name=name, state=State.DOWN if not nsp_answers else worst(parts), pods=own,
                      nsp_answers=nsp_answers, attractors=attractors, conduits=conduits, gateways=tuple(gateways))


def build(snap: proto.Snapshot, objs: Sequence[resources.Resource],
          rates: Mapping[traffic.TargetKey, traffic.Rate] | None = None) -> View:
    """The view of one snapshot, placed in the topology ``objs`` (the environment's resources) describes."""
    rates = rates or {}
    frontends = [p for p in snap.pods if p.kind == FE_KIND]
    gateways = [_gateway(r, frontends) for r in snap.routers]
    sessions = [s for g in gateways for s in g.sessions]
    pods = {p.name: _pod(p, sessions) for p in snap.pods}
    names = sorted({o.name for o in objs if isinstance(o, resources.Trench)} | set(snap.streams)
                   | {p.trench for p in snap.pods if p.trench} | {r.trench for r in snap.routers})
    trenches = tuple(_trench(t, objs, snap, pods, [g for g, r in zip(gateways, snap.routers) if r.trench == t], rates)
                     for t in names)
    not_ready = snap.not_ready + snap.problems
    state = State.DOWN if not_ready else worst([t.state for t in trenches] + [p.state for p in pods.values()])
    return View(environment=snap.environment, state=state, not_ready=not_ready, pods=tuple(pods.values()),
                trenches=trenches)


def down(environment: str, error: str) -> View:
    """The view when there is no snapshot: only why."""
    return View(environment=environment, state=State.DOWN, not_ready=(error,), pods=(), trenches=(), error=error)


def to_json(view: View) -> object:
    """The view as JSON-ready data (what ``/api/view`` serves)."""
    return proto.encode(view)
