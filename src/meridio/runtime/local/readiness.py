"""What ``meridio status`` shows and what ``meridio up`` waits for, gathered from the real system.

Sources (all read-only, queried concurrently with short timeouts): the supervisor (processes), the
gateway routers' BIRD (BGP sessions with the frontends, BFD sessions) and kernels (VIP routes and their
next hops), each target pod's TAPA (stream statuses), each trench's NSP (the targets registered per
stream). :func:`snapshot` gathers one typed :class:`~meridio.runtime.local.protocol.Snapshot`;
:func:`not_ready` turns it into the list of reasons the environment is not ready; empty means ready:
every process runs, every FE has its BGP sessions up, every attractor with targets is announced by
every FE replica, and no target stream is still PENDING.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Protocol

from meridio.api import model, resources, tapaclient
from meridio.api.nspclient import NspClient
from meridio.common import tls as tlsmod
from meridio.kernel import bird, iproute
from meridio.runtime import reconcile as rc
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pods as podsmod
from meridio.runtime.local import protocol as proto
from meridio.runtime.local import routers
from meridio.runtime.local.layout import Naming, StateLayout
from meridio.runtime.local.supervisor import ProcessState, ProcessStatus, Supervisor

__all__ = ["View", "forget_opened", "not_ready", "gateways", "snapshot"]


class View(Protocol):
    """What readiness reads of the controller (the controller itself; a test double in unit tests)."""

    env: envmod.Environment
    naming: Naming
    desired: rc.Desired | None
    pods: dict[str, podsmod.PodSpec]
    awaiting_streams: dict[str, set[str]]

    def resources(self) -> list[resources.Resource]: ...


class Live(View, Protocol):
    """What :func:`snapshot` also needs: the running system."""

    layout: StateLayout
    builder: podsmod.PodBuilder
    sup: Supervisor
    blocked: dict[str, str]

    def opening(self) -> list[str]: ...


async def _router_sessions(ctl: Live, router: envmod.Router) -> tuple[proto.Session, ...]:
    try:
        control = await asyncio.wait_for(bird.connect(routers.bird_socket(ctl.layout, router)), 2.0)
    except Exception:  # noqa: BLE001 (status shows what it can; an unreachable BIRD is just no sessions)
        return ()
    try:
        infos = await control.show_protocols("FE*", details=True)
        bfd = {s.address: s.state for s in await control.show_bfd_sessions()}
    except Exception:  # noqa: BLE001 (same: a BIRD restarting mid-query)
        return ()
    finally:
        await control.close()
    out = []
    for p in infos:
        neighbor = next((d.split(":", 1)[1].strip().split("%")[0] for d in p.details
                         if d.strip().startswith("Neighbor address")), "")
        if neighbor:  # dynamic sessions only, not the FE4/FE6 templates
            out.append(proto.Session(name=p.name, neighbor=neighbor, state=p.state, info=p.info,
                                     bfd=bfd.get(neighbor, "")))
    return tuple(out)


async def _router(ctl: Live, router: envmod.Router) -> proto.Router:
    sessions, routes = await asyncio.gather(_router_sessions(ctl, router),
                                            iproute.bird_routes(ctl.naming.router_ns(router.name)))
    families = tuple(f for f, addr in ((4, router.ipv4), (6, router.ipv6)) if addr is not None and router.bgp is not None)
    return proto.Router(name=router.name, trench=router.trench, network=router.network, sessions=sessions,
                        routes={dst: tuple(hops) for dst, hops in routes.items()}, families=families)


async def _nsp_targets(address: str, tls: tlsmod.Tls | None) -> tuple[proto.RegisteredTarget, ...] | None:
    client = NspClient(address, call_timeout=2.0, tls=tls)
    flt = model.Target.make(status=model.TargetStatus.ANY, type=model.TargetType.DEFAULT)
    try:
        async with asyncio.timeout(2.0):
            async for targets in client.watch_targets(flt):
                return tuple(proto.RegisteredTarget(
                    stream=t.stream.name if t.stream else "",
                    conduit=t.stream.conduit.name if t.stream and t.stream.conduit else "",
                    identifier=t.identifier or "", status=t.status.name, ips=tuple(t.ips)) for t in targets)
    except Exception:  # noqa: BLE001 (an NSP that does not answer shows as such)
        return None
    finally:
        await client.close()
    return None


async def _targets(ctl: Live) -> dict[str, tuple[proto.StreamStatus, ...] | None]:
    names = [n for n, p in ctl.pods.items() if p.kind is rc.Kind.TARGET]
    found = await asyncio.gather(*(tapaclient.statuses(ctl.builder.tapa_socket(n)) for n in names))
    return {n: (None if s is None else tuple(s)) for n, s in zip(names, found)}


async def _streams(ctl: Live) -> dict[str, tuple[proto.RegisteredTarget, ...] | None]:
    trenches = sorted((ctl.desired.configmaps if ctl.desired else {}).keys())
    found = await asyncio.gather(*(_nsp_targets(ctl.builder.nsp_forward(t), ctl.builder.runtime_tls)
                                   for t in trenches))
    return dict(zip(trenches, found))


def _pods(ctl: Live) -> tuple[proto.Pod, ...]:
    procs = {s.name: s for s in ctl.sup.status()}
    out = []
    for w in (ctl.desired.workloads if ctl.desired else ()):
        spec = ctl.pods.get(w.name)
        pod = proto.Pod(name=w.name, kind=w.kind.value, node=w.node or "", trench=w.trench or "",
                        netns=ctl.naming.pod_ns(w.name), state="Pending", **_placement(ctl, w, spec))
        if w.pending:
            pod = dataclasses.replace(pod, reason=w.pending)
        elif w.name in ctl.blocked:
            pod = dataclasses.replace(pod, state="Blocked", reason=ctl.blocked[w.name])
        elif spec is None:
            pod = dataclasses.replace(pod, reason="not started yet")
        else:
            mine = [procs[p.name] for p in spec.processes if p.name in procs]
            running = len(mine) == len(spec.processes) and all(s.state is ProcessState.RUNNING for s in mine)
            failed = [s for s in mine if s.failed]
            pod = dataclasses.replace(pod, state="Failed" if failed else "Running" if running else "NotReady",
                                      reason="; ".join(map(_failure, failed)), containers=tuple(
                proto.Container(component=s.component, state=s.state.value, restarts=s.restarts, failed=s.failed,
                                last_error=s.last_error) for s in mine))
        out.append(pod)
    return tuple(out)


def _failure(s: ProcessStatus) -> str:
    return (f"{s.component} exited {s.quick_exits} times in a row soon after starting (retried with backoff, "
            f"log {s.log_path}): {s.last_error or 'no output'}")


def _placement(ctl: Live, w: rc.Workload, spec: podsmod.PodSpec | None) -> dict[str, Any]:
    """Where a pod sits in the topology: its attractor or conduit, its segment and addresses there."""
    out: dict[str, Any] = {"attractor": w.param("attractor") if w.kind is rc.Kind.FRONTEND_LB else "",
                           "conduit": w.param("conduit") if w.kind is rc.Kind.PROXY else ""}
    if spec is not None and spec.external is not None:
        out["network"] = spec.external.peer_ns[len(ctl.naming.network_ns("")):]
        out["addresses"] = tuple(a.split("/")[0] for a in spec.external.addresses)
    return out


async def gateways(ctl: Live) -> tuple[proto.Router, ...]:
    """Every gateway router's sessions with the frontends and its VIP routes, as BIRD and the kernel say."""
    return tuple(await asyncio.gather(*(_router(ctl, r) for r in ctl.env.routers)))


async def snapshot(ctl: Live) -> proto.Snapshot:
    """Everything ``meridio status -o json`` prints."""
    routers_, targets, streams = await asyncio.gather(gateways(ctl), _targets(ctl), _streams(ctl))
    snap = proto.Snapshot(
        environment=ctl.env.name, prefix=ctl.env.prefix, state_dir=str(ctl.layout.root),
        processes=tuple(proto.Process(name=s.name, pod=s.pod, component=s.component, pid=s.pid, state=s.state.value,
                                      restarts=s.restarts, exit_code=s.exit_code, since=s.since,
                                      log_path=str(s.log_path), failed=s.failed, last_error=s.last_error)
                        for s in ctl.sup.status()),
        pods=_pods(ctl), routers=tuple(routers_), targets=targets, streams=streams,
        problems=tuple(ctl.desired.problems) if ctl.desired else (), opening=tuple(sorted(ctl.opening())))
    forget_opened(ctl, snap)
    return dataclasses.replace(snap, not_ready=tuple(not_ready(ctl, snap)))


def _stream_status(statuses: tuple[proto.StreamStatus, ...]) -> dict[str, str]:
    return {s.ref: s.status for s in statuses}


def forget_opened(ctl: View, snap: proto.Snapshot) -> None:
    """Stop awaiting the streams a pod opened at start once they all show OPEN: what the user does with
    a stream later (close it, say) is not a readiness matter."""
    for pod, statuses in snap.targets.items():
        status = _stream_status(statuses or ())
        if statuses is not None and all(status.get(ref) == "OPEN" for ref in ctl.awaiting_streams.get(pod, ())):
            ctl.awaiting_streams.pop(pod, None)


def not_ready(ctl: View, snap: proto.Snapshot) -> list[str]:
    """Why the environment is not ready (empty: ready), from one snapshot; changes nothing."""
    reasons = [f"pod {p.name}: {p.state}" + (f" ({p.reason})" if p.reason else "")
               for p in snap.pods if p.state not in ("Running", "Pending")]
    reasons += [f"process {p.name}: " + (f"failed, exits soon after starting: {p.last_error or 'no output'}"
                                          if p.failed else p.state)
                for p in snap.processes
                if (p.failed or p.state != ProcessState.RUNNING.value) and p.pod.startswith(routers.POD_PREFIX)]
    reasons += [f"pod {n}: opening its streams" for n in snap.opening]
    for pod, statuses in snap.targets.items():
        if statuses is None:
            reasons.append(f"pod {pod}: TAPA not answering")
            continue
        reasons += [f"pod {pod}: stream {s.stream} {s.status}" for s in statuses if s.status == "PENDING"]
        status = _stream_status(statuses)
        # opened at start, not OPEN yet (Open is asynchronous; early on a stream may be UNDEFINED)
        awaited = {ref for ref in ctl.awaiting_streams.get(pod, set()) if status.get(ref) != "OPEN"}
        reasons += [f"pod {pod}: stream {ref.split('/')[-1]} {status.get(ref, 'not listed')}" for ref in sorted(awaited)]
    reasons += [f"trench {t}: NSP not answering" for t, targets in snap.streams.items() if targets is None]
    reasons += _routing_reasons(ctl, snap)
    return reasons


def _routing_reasons(ctl: View, snap: proto.Snapshot) -> list[str]:
    """Each router peers with every FE on its segment; attractors with targets are announced by all FEs."""
    out = []
    fe_by_net = _frontends_by_network(ctl)
    for r in snap.routers:
        router = ctl.env.router(r.name)
        fes = fe_by_net.get(r.network, {})
        up = {s.neighbor for s in r.sessions if s.info.startswith("Established")}
        for pod, addrs in fes.items():
            for addr in addrs:
                if _family_served(router, addr) and addr not in up:
                    out.append(f"router {r.name}: no BGP session with {pod} ({addr})")
    out += _announce_reasons(ctl, snap, fe_by_net)
    return out


def _family_served(router: envmod.Router | None, addr: str) -> bool:
    if router is None or router.bgp is None:
        return False
    return (router.ipv6 if ":" in addr else router.ipv4) is not None


def _frontends_by_network(ctl: View) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for name, spec in ctl.pods.items():
        if spec.kind is rc.Kind.FRONTEND_LB and spec.external is not None:
            net = spec.external.peer_ns[len(ctl.naming.network_ns("")):]
            out.setdefault(net, {})[name] = [a.split("/")[0] for a in spec.external.addresses]
    return out


def _announce_reasons(ctl: View, snap: proto.Snapshot, fe_by_net: dict[str, dict[str, list[str]]]) -> list[str]:
    objs = ctl.resources()
    vips = {(v.namespace, v.name): v.spec.address for v in objs if isinstance(v, resources.Vip)}
    workloads = ctl.desired.workloads if ctl.desired else ()
    out = []
    for a in (o for o in objs if isinstance(o, resources.Attractor)):
        conduit = a.spec.composites[0] if a.spec.composites else ""
        targets = snap.streams.get(a.trench or "") or ()
        if not any(t.conduit == conduit and t.status == "ENABLED" for t in targets):
            continue  # nothing to announce: Meridio withdraws VIPs without targets
        pods = {w.name for w in workloads if w.kind is rc.Kind.FRONTEND_LB and w.param("attractor") == a.name
                and w.trench == a.trench and not w.pending}
        for r in snap.routers:
            if r.trench != a.trench:
                continue
            hops_wanted = {addr for pod, addrs in fe_by_net.get(r.network, {}).items() if pod in pods for addr in addrs}
            if not hops_wanted:
                continue
            for vname in a.spec.vips:
                addr = vips.get((a.namespace, vname))
                if not addr or not _family_served(ctl.env.router(r.name), addr.split("/")[0]):
                    continue
                fam_hops = {h for h in hops_wanted if (":" in h) == (":" in addr)}
                have = set(r.routes.get(addr, ()))
                if not fam_hops <= have:
                    out.append(f"router {r.name}: {addr} ({a.name}) not announced by every FE "
                               f"({len(have & fam_hops)}/{len(fam_hops)})")
    return out
