"""What ``meridio status`` shows and what ``meridio up`` waits for, gathered from the real system.

Sources (all read-only, queried concurrently with short timeouts): the supervisor (processes), the
gateway routers' BIRD (BGP sessions with the frontends, BFD sessions) and kernels (VIP routes and their
next hops), each target pod's TAPA (stream statuses), each trench's NSP (the targets registered per
stream). :func:`not_ready` turns one snapshot into the list of reasons the environment is not ready;
empty means ready: every process runs, every FE has its BGP sessions up, every attractor with targets
is announced by every FE replica, and no target stream is still PENDING.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from meridio.api import model
from meridio.runtime import reconcile as rc
from meridio.runtime.local import routers, tapaclient
from meridio.runtime.local.supervisor import ProcessState

__all__ = ["forget_opened", "not_ready", "router_routes", "snapshot"]


async def _run(argv: list[str], timeout: float = 3.0) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode()


async def router_routes(netns: str) -> dict[str, list[str]]:
    """VIP routes BIRD installed in a router's kernel: destination → next hops."""
    out: dict[str, list[str]] = {}
    for fam in ("-4", "-6"):
        text = await _run(["ip", "-j", fam, "-n", netns, "route", "show", "proto", "bird"])
        with contextlib.suppress(ValueError):
            for r in json.loads(text or "[]"):
                hops = [h.get("gateway", "") for h in r.get("nexthops", [])] or [r.get("gateway", "")]
                dst = r.get("dst", "")
                if "/" not in dst:
                    dst += "/128" if ":" in dst else "/32"
                out[dst] = sorted(h for h in hops if h)
    return out


async def _router_sessions(ctl: Any, router: Any) -> list[dict[str, Any]]:
    from meridio.kernel import bird

    try:
        control = await asyncio.wait_for(bird.connect(routers.bird_socket(ctl.layout, router)), 2.0)
    except Exception:  # noqa: BLE001 (status shows what it can; an unreachable BIRD is just no sessions)
        return []
    try:
        infos = await control.show_protocols("FE*", details=True)
        bfd = {s.address: s.state for s in await control.show_bfd_sessions()}
    except Exception:  # noqa: BLE001 (same: a BIRD restarting mid-query)
        return []
    finally:
        await control.close()
    out = []
    for p in infos:
        neighbor = next((d.split(":", 1)[1].strip().split("%")[0] for d in p.details
                         if d.strip().startswith("Neighbor address")), "")
        if neighbor:  # dynamic sessions only, not the FE4/FE6 templates
            out.append({"name": p.name, "neighbor": neighbor, "state": p.state, "info": p.info,
                        "bfd": bfd.get(neighbor, "")})
    return out


async def _router(ctl: Any, router: Any) -> dict[str, Any]:
    sessions, routes = await asyncio.gather(_router_sessions(ctl, router),
                                            router_routes(ctl.naming.router_ns(router.name)))
    return {"name": router.name, "trench": router.trench, "network": router.network, "sessions": sessions,
            "routes": routes}


async def _nsp_targets(address: str) -> list[dict[str, Any]] | None:
    from meridio.api.nspclient import NspClient

    client = NspClient(address, call_timeout=2.0)
    flt = model.Target.make(status=model.TargetStatus.ANY, type=model.TargetType.DEFAULT)
    try:
        async with asyncio.timeout(2.0):
            async for targets in client.watch_targets(flt):
                return [{"stream": t.stream.name if t.stream else "",
                         "conduit": t.stream.conduit.name if t.stream and t.stream.conduit else "",
                         "identifier": t.identifier or "", "status": t.status.name, "ips": list(t.ips)}
                        for t in targets]
    except Exception:  # noqa: BLE001 (an NSP that does not answer shows as such)
        return None
    finally:
        await client.close()
    return None


async def _targets(ctl: Any) -> dict[str, Any]:
    names = [n for n, p in ctl.pods.items() if p.kind is rc.Kind.TARGET]
    found = await asyncio.gather(*(tapaclient.statuses(ctl.builder.tapa_socket(n)) for n in names))
    return {n: (None if s is None else [dataclasses_dict(x) for x in s]) for n, s in zip(names, found)}


def dataclasses_dict(s: tapaclient.StreamStatus) -> dict[str, str]:
    return {"status": s.status, "stream": s.stream, "conduit": s.conduit, "trench": s.trench}


async def _streams(ctl: Any) -> dict[str, Any]:
    trenches = sorted((ctl.desired.configmaps if ctl.desired else {}).keys())
    found = await asyncio.gather(*(_nsp_targets(ctl.builder.nsp_address(t)) for t in trenches))
    return dict(zip(trenches, found))


def _pods(ctl: Any) -> list[dict[str, Any]]:
    procs = {s.name: s for s in ctl.sup.status()}
    out = []
    for w in (ctl.desired.workloads if ctl.desired else ()):
        row = {"name": w.name, "kind": w.kind.value, "node": w.node, "trench": w.trench,
               "netns": ctl.naming.pod_ns(w.name)}
        spec = ctl.pods.get(w.name)
        if w.pending:
            row.update(state="Pending", reason=w.pending)
        elif w.name in ctl.blocked:
            row.update(state="Blocked", reason=ctl.blocked[w.name])
        elif spec is None:
            row.update(state="Pending", reason="not started yet")
        else:
            states = [procs[p.name].state for p in spec.processes if p.name in procs]
            running = len(states) == len(spec.processes) and all(s is ProcessState.RUNNING for s in states)
            row.update(state="Running" if running else "NotReady", containers=[
                {"component": p.component, "state": procs[p.name].state.value, "restarts": procs[p.name].restarts}
                for p in spec.processes if p.name in procs])
        out.append(row)
    return out


async def snapshot(ctl: Any) -> dict[str, Any]:
    """Everything ``meridio status -o json`` prints."""
    routers_, targets, streams = await asyncio.gather(
        asyncio.gather(*(_router(ctl, r) for r in ctl.env.routers)), _targets(ctl), _streams(ctl))
    snap: dict[str, Any] = {
        "environment": ctl.env.name, "prefix": ctl.env.prefix, "stateDir": str(ctl.layout.root),
        "processes": [s.to_dict() for s in ctl.sup.status()],
        "pods": _pods(ctl), "routers": list(routers_), "targets": targets, "streams": streams,
        "problems": list(ctl.desired.problems) if ctl.desired else [],
        "opening": sorted(n for n, t in ctl._openers.items() if not t.done()),
    }
    forget_opened(ctl, snap)
    snap["notReady"] = not_ready(ctl, snap)
    return snap


def _stream_status(statuses: list[dict[str, Any]]) -> dict[str, str]:
    return {f"{s['trench']}/{s['conduit']}/{s['stream']}": s["status"] for s in statuses}


def forget_opened(ctl: Any, snap: dict[str, Any]) -> None:
    """Stop awaiting the streams a pod opened at start once they all show OPEN: what the user does with
    a stream later (close it, say) is not a readiness matter."""
    for pod, statuses in snap["targets"].items():
        status = _stream_status(statuses or [])
        if statuses is not None and all(status.get(ref) == "OPEN" for ref in ctl.awaiting_streams.get(pod, ())):
            ctl.awaiting_streams.pop(pod, None)


def not_ready(ctl: Any, snap: dict[str, Any]) -> list[str]:
    """Why the environment is not ready (empty: ready), from one snapshot; changes nothing."""
    reasons = [f"pod {p['name']}: {p['state']}" + (f" ({p['reason']})" if p.get("reason") else "")
               for p in snap["pods"] if p["state"] != "Running" and p["state"] != "Pending"]
    reasons += [f"process {p['name']}: {p['state']}" for p in snap["processes"]
                if p["state"] != ProcessState.RUNNING.value and p["pod"].startswith(routers.POD_PREFIX)]
    reasons += [f"pod {n}: opening its streams" for n in snap["opening"]]
    for pod, statuses in snap["targets"].items():
        if statuses is None:
            reasons.append(f"pod {pod}: TAPA not answering")
            continue
        reasons += [f"pod {pod}: stream {s['stream']} {s['status']}" for s in statuses if s["status"] == "PENDING"]
        status = _stream_status(statuses)
        # opened at start, not OPEN yet (Open is asynchronous; early on a stream may be UNDEFINED)
        awaited = {ref for ref in ctl.awaiting_streams.get(pod, set()) if status.get(ref) != "OPEN"}
        reasons += [f"pod {pod}: stream {ref.split('/')[-1]} {status.get(ref, 'not listed')}" for ref in sorted(awaited)]
    reasons += [f"trench {t}: NSP not answering" for t, targets in snap["streams"].items() if targets is None]
    reasons += _routing_reasons(ctl, snap)
    return reasons


def _routing_reasons(ctl: Any, snap: dict[str, Any]) -> list[str]:
    """Each router peers with every FE on its segment; attractors with targets are announced by all FEs."""
    out = []
    fe_by_net = _frontends_by_network(ctl)
    for r in snap["routers"]:
        router = ctl.env.router(r["name"])
        fes = fe_by_net.get(r["network"], {})
        up = {s["neighbor"] for s in r["sessions"] if s["info"].startswith("Established")}
        for pod, addrs in fes.items():
            for addr in addrs:
                if _family_served(router, addr) and addr not in up:
                    out.append(f"router {r['name']}: no BGP session with {pod} ({addr})")
    out += _announce_reasons(ctl, snap, fe_by_net)
    return out


def _family_served(router: Any, addr: str) -> bool:
    if router is None or router.bgp is None:
        return False
    return (router.ipv6 if ":" in addr else router.ipv4) is not None


def _frontends_by_network(ctl: Any) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for name, spec in ctl.pods.items():
        if spec.kind is rc.Kind.FRONTEND_LB and spec.external is not None:
            net = spec.external.peer_ns[len(ctl.naming.network_ns("")):]
            out.setdefault(net, {})[name] = [a.split("/")[0] for a in spec.external.addresses]
    return out


def _announce_reasons(ctl: Any, snap: dict[str, Any], fe_by_net: dict[str, dict[str, list[str]]]) -> list[str]:
    from meridio.api import resources

    objs = ctl.resources()
    vips = {(v.namespace, v.name): v.spec.address for v in objs if isinstance(v, resources.Vip)}
    out = []
    for a in (o for o in objs if isinstance(o, resources.Attractor)):
        conduit = a.spec.composites[0] if a.spec.composites else ""
        targets = snap["streams"].get(a.trench) or []
        if not any(t["conduit"] == conduit and t["status"] == "ENABLED" for t in targets):
            continue  # nothing to announce: Meridio withdraws VIPs without targets
        pods = {w.name for w in ctl.desired.workloads if w.kind is rc.Kind.FRONTEND_LB and w.param("attractor") == a.name
                and w.trench == a.trench and not w.pending}
        for r in snap["routers"]:
            if r["trench"] != a.trench:
                continue
            hops_wanted = {addr for pod, addrs in fe_by_net.get(r["network"], {}).items() if pod in pods for addr in addrs}
            if not hops_wanted:
                continue
            for vname in a.spec.vips:
                addr = vips.get((a.namespace, vname))
                if not addr or not _family_served(ctl.env.router(r["name"]), addr.split("/")[0]):
                    continue
                fam_hops = {h for h in hops_wanted if (":" in h) == (":" in addr)}
                have = set(r["routes"].get(addr, []))
                if not fam_hops <= have:
                    out.append(f"router {r['name']}: {addr} ({a.name}) not announced by every FE "
                               f"({len(have & fam_hops)}/{len(fam_hops)})")
    return out
