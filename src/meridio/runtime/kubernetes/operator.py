"""The operator's pure core: per Trench the ConfigMap ``meridio-configuration-<trench>`` the NSP reads,
rendered from every Meridio object of the trench, and a ``Ready`` condition on every object (with the
readiness of its workloads, :func:`readiness`; the workloads themselves are
:mod:`meridio.runtime.kubernetes.workloads`).

Pure core: :func:`desired` (the namespace's objects → the ConfigMaps and each object's condition).
Adapter (:mod:`meridio.runtime.kubernetes.handlers`): kopf event handlers for the seven kinds, the
operator's ConfigMaps and its workloads, which re-read the namespace through :mod:`meridio.api.kubeapi`
and write what differs, so a change of one object rewrites only its trench's ConfigMap, and a manual
edit of a ConfigMap (a changed or an added key) is reverted. The ConfigMap is owned by its Trench
(owner reference): deleting the Trench lets the garbage collector delete it. The operator watches only
its own namespace, as Meridio's does.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meridio.api import configmap, resources
from meridio.api import problems as pb
from meridio.common import settings as settingsmod

__all__ = ["FIELD_MANAGER", "MANAGED_BY", "WORKLOADS_OF", "Condition", "Desired", "OperatorSettings", "condition_patch",
           "configmap_object", "desired", "readiness"]

FIELD_MANAGER = "meridio-operator"
MANAGED_BY = {"app.kubernetes.io/managed-by": FIELD_MANAGER}


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """``meridio operator`` flags and ``MERIDIO_*`` variables."""

    namespace: str = settingsmod.setting("", "the namespace the operator watches (its own)")
    webhook_cert_dir: str = settingsmod.setting("", "serve the admission webhook with tls.crt/tls.key of this "
                                                    "directory (empty: no webhook)")
    webhook_host: str = settingsmod.setting("0.0.0.0", "address the webhook listens on")
    webhook_port: int = settingsmod.setting(9443, "port the webhook listens on")
    webhook_certs: str = settingsmod.setting("operator", "who provides the webhook's certificate and caBundle: "
                                                         "the operator (a Secret of its own) or external "
                                                         "(cert-manager, a Secret of yours)",
                                             choices=("operator", "external"))
    leader_election: bool = settingsmod.setting(True, "reconcile only while holding the Lease meridio-operator "
                                                      "(a standby replica takes over when the leader goes)")
    image: str = settingsmod.setting("meridio:0.1.0", "the image of the workloads the operator creates")
    webhook_url: str = settingsmod.setting("", "the URL the API server calls the webhook at, for an operator run "
                                               "outside the cluster (empty: through the Service)")


@dataclasses.dataclass(frozen=True)
class Condition:
    status: str
    """``True``, ``False``."""
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Desired:
    configmaps: Mapping[str, dict[str, Any]]
    """Trench name → the ConfigMap object (without owner reference: see :func:`configmap_object`)."""
    conditions: Mapping[tuple[str, str], Condition]
    """(kind, name) → its Ready condition."""


def desired(objs: Sequence[resources.Resource], namespace: str) -> Desired:
    """What the namespace's Meridio objects ask for."""
    mine = [o for o in objs if o.namespace == namespace]
    trenches = {o.name for o in mine if isinstance(o, resources.Trench)}
    cms: dict[str, dict[str, Any]] = {}
    conditions: dict[tuple[str, str], Condition] = {}
    for trench in sorted(trenches):
        try:
            data = configmap.render(mine, trench, namespace)
        except pb.ProblemsError as exc:
            message = "; ".join(str(p) for p in exc.problems)[:1024]
            conditions[("Trench", trench)] = Condition("False", "ConfigurationInvalid", message)
            continue
        cms[trench] = {"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": configmap.configmap_name(trench), "namespace": namespace,
                                    "labels": {**MANAGED_BY, "trench": trench}},
                       "data": data}
    for o in mine:
        if o.KIND not in resources.MERIDIO_KINDS or (o.KIND, o.name) in conditions:
            continue
        label = o.trench
        if label is None or label not in trenches:
            conditions[(o.KIND, o.name)] = Condition(
                "False", "TrenchNotFound", f"no Trench {label!r} in namespace {namespace!r}" if label
                else "no trench label")
        elif label in cms:
            conditions[(o.KIND, o.name)] = Condition(
                "True", "Configured", f"in ConfigMap {configmap.configmap_name(label)}")
        else:
            conditions[(o.KIND, o.name)] = Condition("False", "TrenchNotConfigured",
                                                     f"the configuration of trench {label!r} is invalid")
    return Desired(cms, conditions)


def configmap_object(cm: Mapping[str, Any], trench_uid: str, trench: str) -> dict[str, Any]:
    """The ConfigMap with its Trench as controlling owner (garbage-collected with it)."""
    out = {**cm, "metadata": {**cm["metadata"], "ownerReferences": [{
        "apiVersion": resources.API_VERSION, "kind": "Trench", "name": trench, "uid": trench_uid,
        "controller": True, "blockOwnerDeletion": True}]}}
    return out


WORKLOADS_OF: dict[str, list[tuple[str, str]]] = {
    "Trench": [("statefulsets", "nsp-{name}"), ("statefulsets", "ipam-{name}")],
    "Attractor": [("deployments", "stateless-lb-frontend-{name}")],
    "Conduit": [("daemonsets", "proxy-{name}")],
}
"""The workloads whose readiness a Meridio object's Ready condition reports (apps/v1 plural, name)."""


def _ready_counts(plural: str, status: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[int, int]:
    if plural == "daemonsets":
        return int(status.get("numberReady") or 0), int(status.get("desiredNumberScheduled") or 0)
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    if plural == "deployments":
        return int(status.get("availableReplicas") or 0), want
    return int(status.get("readyReplicas") or 0), want


def readiness(kind: str, name: str, configured: Condition,
              workloads: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> Condition:
    """The Ready condition of a configured object with workloads: True only when every one of them is
    ready, else why not (``workloads``: (plural, name) → the stored object, None if missing)."""
    if configured.status != "True" or kind not in WORKLOADS_OF:
        return configured
    missing, waiting = [], []
    for plural, template in WORKLOADS_OF[kind]:
        wname = template.format(name=name)
        obj = workloads.get((plural, wname))
        if obj is None:
            missing.append(wname)
            continue
        ready, want = _ready_counts(plural, obj.get("status") or {}, obj.get("spec") or {})
        if want == 0 or ready < want:
            waiting.append(f"{wname}: {ready}/{want} ready")
    if missing:
        return Condition("False", "WorkloadsMissing", "not created yet: " + ", ".join(missing))
    if waiting:
        return Condition("False", "WorkloadsNotReady", "; ".join(waiting))
    return Condition("True", "Ready", configured.message)


def condition_patch(current: Iterable[Mapping[str, Any]], new: Condition, generation: int,
                    now: datetime.datetime) -> list[dict[str, Any]] | None:
    """The ``status.conditions`` with ``Ready`` set to ``new``; ``None`` if nothing changes (the
    transition time moves only when the status does)."""
    conditions = [dict(c) for c in current]
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    wanted = {"type": "Ready", "status": new.status, "reason": new.reason, "message": new.message,
              "observedGeneration": generation}
    if old is not None and all(old.get(k) == v for k, v in wanted.items()):
        return None
    stamp = old.get("lastTransitionTime") if old is not None and old.get("status") == new.status else None
    wanted["lastTransitionTime"] = stamp or now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [*(c for c in conditions if c.get("type") != "Ready"), wanted]
