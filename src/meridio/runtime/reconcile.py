"""Resources in, desired workloads out: the reconcile core shared by the local runtime and the operator.

Pure. :func:`desired` turns the applied Meridio resources, the nodes and the target deployments into
the workloads that must run, as Meridio's operator does (reference §6.1):

- per Trench: an NSP and an IPAM (``nsp-<trench>``, ``ipam-<trench>``) and the ConfigMap data the NSP
  serves (``meridio.api.configmap.render``);
- per Attractor: ``replicas`` FE+LB pods ``stateless-lb-frontend-<attractor>-<i>``, at most one per node
  (Meridio's required pod anti-affinity: replicas beyond the node count stay pending);
- per Conduit and node: a proxy ``proxy-<conduit>-<node>`` (a DaemonSet);
- per target deployment replica: a target pod ``<deployment>-<i>`` (example target + TAPA), spread
  round-robin over the nodes.

Each workload carries only what its processes are started with (``params``) and a ``spec_hash`` of it,
so :func:`plan` can tell exactly which pods to start, stop or keep. Everything an NSP watcher learns at
runtime (VIPs, flows, streams, gateways, port NATs) lives in the ConfigMap data, not in ``params``:
changing a flow rewrites the trench configuration and restarts nothing.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from meridio.api import configmap, resources

__all__ = [
    "Desired",
    "Kind",
    "Plan",
    "TargetDeployment",
    "Workload",
    "desired",
    "fe_pod_name",
    "ipam_pod_name",
    "nsp_pod_name",
    "plan",
    "attractor_template",
    "proxy_pod_name",
    "proxy_template",
    "trench_templates",
]


class Kind(str, enum.Enum):
    NSP = "nsp"
    IPAM = "ipam"
    FRONTEND_LB = "stateless-lb-frontend"
    PROXY = "proxy"
    TARGET = "target"


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    """Pod name: stable, unique in the environment."""
    kind: Kind
    node: str
    trench: str = ""
    namespace: str = "default"
    params: tuple[tuple[str, str], ...] = ()
    """What the pod's processes are started with (sorted key/value pairs)."""
    pending: str = ""
    """Why the pod cannot be scheduled (empty: it can)."""

    def param(self, key: str, default: str = "") -> str:
        return dict(self.params).get(key, default)

    @property
    def spec_hash(self) -> str:
        blob = json.dumps([self.kind.value, self.node, self.trench, self.namespace, list(self.params)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class TargetDeployment:
    """Replicas of the example application with its TAPA; ``streams`` are ``trench/conduit/stream``."""

    name: str
    replicas: int
    streams: tuple[str, ...] = ()
    namespace: str = "default"


MERIDIO_MAX_TARGETS = 10000
"""The largest ``max-targets`` a Stream may have (Meridio's webhook): the replica limit of a deployment
none of whose streams exists yet."""


def replica_limit(objs: Iterable[resources.Resource], dep: TargetDeployment) -> tuple[int, str]:
    """How many replicas ``dep`` may have, and why: the largest ``max-targets`` (100 when unset) of the
    streams it opens — more targets than that could never all get an identifier in one stream."""
    wanted = {tuple(ref.split("/", 2)) for ref in dep.streams}
    found = [(configmap.DEFAULT_MAX_TARGETS if o.spec.max_targets is None else o.spec.max_targets, o.name)
             for o in objs if isinstance(o, resources.Stream) and o.namespace == dep.namespace
             and (o.trench, o.spec.conduit, o.name) in wanted]
    if not found:
        return MERIDIO_MAX_TARGETS, f"Meridio's largest max-targets: deployment {dep.name} opens no stream that exists"
    limit, stream = max(found)
    return limit, f"the max-targets of stream {stream}, the largest of the streams deployment {dep.name} opens"


@dataclasses.dataclass(frozen=True)
class Desired:
    workloads: tuple[Workload, ...]
    configmaps: Mapping[str, Mapping[str, str]]
    """ConfigMap data per trench name."""
    problems: tuple[str, ...] = ()
    """Why something cannot be realised (shown by ``status``); never blocks the rest."""

    def by_name(self) -> dict[str, Workload]:
        return {w.name: w for w in self.workloads}


@dataclasses.dataclass(frozen=True)
class Plan:
    start: tuple[Workload, ...]
    stop: tuple[str, ...]
    keep: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.start and not self.stop


def nsp_pod_name(trench: str) -> str:
    return f"nsp-{trench}"


def ipam_pod_name(trench: str) -> str:
    return f"ipam-{trench}"


def fe_pod_name(attractor: str, index: int) -> str:
    return f"stateless-lb-frontend-{attractor}-{index}"


def proxy_pod_name(conduit: str, node: str) -> str:
    return f"proxy-{conduit}-{node}"


def _params(**values: object) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k.replace("_", "-"), str(v)) for k, v in values.items()))


def desired(objs: Sequence[resources.Resource], *, nodes: Sequence[str],
            deployments: Sequence[TargetDeployment] = ()) -> Desired:
    """The workloads and trench configurations that ``objs`` call for on ``nodes``."""
    if not nodes:
        raise ValueError("at least one node is needed")
    trenches = sorted((o for o in objs if isinstance(o, resources.Trench)), key=lambda t: (t.namespace, t.name))
    workloads: list[Workload] = []
    configmaps: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    seen: dict[str, str] = {}
    for trench in trenches:
        if trench.name in seen:
            problems.append(f"Trench/{trench.name}: namespace {trench.namespace}: a trench of that name already "
                            f"runs from namespace {seen[trench.name]} (trench names are unique in a local environment)")
            continue
        seen[trench.name] = trench.namespace
        configmaps[trench.name] = configmap.render(objs, trench.name, trench.namespace)
        workloads += _trench_workloads(objs, trench, nodes)
    for dep in deployments:
        workloads += _target_workloads(dep, nodes)
    return Desired(tuple(workloads), configmaps, tuple(problems))


def _of(objs: Iterable[resources.Resource], trench: resources.Trench, kind: type) -> list:  # type: ignore[type-arg]
    found = [o for o in objs if isinstance(o, kind) and o.namespace == trench.namespace and o.trench == trench.name]
    return sorted(found, key=lambda o: o.name)


def trench_templates(trench: resources.Trench) -> tuple[Workload, Workload]:
    """The NSP and IPAM of ``trench`` (placed on no node yet)."""
    t, ns, family = trench.name, trench.namespace, trench.spec.ip_family
    return (Workload(nsp_pod_name(t), Kind.NSP, "", trench=t, namespace=ns),
            Workload(ipam_pod_name(t), Kind.IPAM, "", trench=t, namespace=ns, params=_params(ip_family=family)))


def attractor_template(attractor: resources.Attractor, family: str) -> Workload:
    """An FE+LB pod of ``attractor``: what every replica runs (replica 0's name, placed on no node yet)."""
    spec = attractor.spec
    itf = spec.interface
    nad = itf.network_attachments[0] if itf.network_attachments else None
    params = _params(
        attractor=attractor.name, conduit=spec.composites[0] if spec.composites else "", ip_family=family,
        interface=(nad.interface if nad and nad.interface else itf.name), interface_type=itf.type,
        network_attachment=f"{nad.namespace}/{nad.name}" if nad else "",
        vlan_id="" if itf.nsm_vlan.vlan_id is None else itf.nsm_vlan.vlan_id)
    return Workload(fe_pod_name(attractor.name, 0), Kind.FRONTEND_LB, "", trench=attractor.trench or "",
                    namespace=attractor.namespace, params=params)


def proxy_template(conduit: resources.Conduit, family: str) -> Workload:
    """The proxy of ``conduit`` (one per node; placed on no node yet)."""
    return Workload(f"proxy-{conduit.name}", Kind.PROXY, "", trench=conduit.trench or "",
                    namespace=conduit.namespace, params=_params(conduit=conduit.name, ip_family=family))


def _trench_workloads(objs: Sequence[resources.Resource], trench: resources.Trench,
                      nodes: Sequence[str]) -> list[Workload]:
    family = trench.spec.ip_family
    out = [dataclasses.replace(w, node=nodes[0]) for w in trench_templates(trench)]
    for attractor in _of(objs, trench, resources.Attractor):
        out += _attractor_workloads(attractor, family, nodes)
    for conduit in _of(objs, trench, resources.Conduit):
        template = proxy_template(conduit, family)
        out += [dataclasses.replace(template, name=proxy_pod_name(conduit.name, node), node=node) for node in nodes]
    return out


def _attractor_workloads(attractor: resources.Attractor, family: str, nodes: Sequence[str]) -> list[Workload]:
    template = attractor_template(attractor, family)
    replicas = 1 if attractor.spec.replicas is None else max(attractor.spec.replicas, 0)
    out = []
    for i in range(replicas):
        node = nodes[i] if i < len(nodes) else ""
        pending = "" if node else (f"0/{len(nodes)} nodes are available: one FE+LB pod per node "
                                   f"(attractor {attractor.name} wants {replicas} replicas)")
        out.append(dataclasses.replace(template, name=fe_pod_name(attractor.name, i), node=node, pending=pending))
    return out


def _target_workloads(dep: TargetDeployment, nodes: Sequence[str]) -> list[Workload]:
    params = _params(deployment=dep.name, streams=",".join(dep.streams))
    return [Workload(f"{dep.name}-{i}", Kind.TARGET, nodes[i % len(nodes)], namespace=dep.namespace, params=params)
            for i in range(max(dep.replicas, 0))]


def plan(current: Mapping[str, str], want: Desired) -> Plan:
    """What to do to go from ``current`` (pod name → spec hash of what runs) to ``want``.

    A pod whose spec hash changed is stopped and started again (it appears in both lists); pending
    workloads are not started (and a running pod that became pending is stopped).
    """
    wanted = {w.name: w for w in want.workloads if not w.pending}
    stop = [name for name, h in current.items() if name not in wanted or wanted[name].spec_hash != h]
    start = [w for name, w in wanted.items() if current.get(name) != w.spec_hash]
    keep = [name for name, w in wanted.items() if current.get(name) == w.spec_hash]
    return Plan(tuple(start), tuple(sorted(stop)), tuple(sorted(keep)))
