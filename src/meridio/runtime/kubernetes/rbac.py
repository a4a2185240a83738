"""The operator's RBAC: a namespaced Role and its binding.

What it may do and why: CRUD on the workloads and objects it creates (Deployments, StatefulSets,
DaemonSets, ConfigMaps, Services, PodDisruptionBudgets); get/list/watch/update on the seven Meridio
kinds and patch on their ``status`` (the Ready condition); Leases for leader election; its own webhook
Secret (get/update by name; create cannot be limited to a name). No other Secret, no Pods. The one
cluster-scoped right, its own webhook configuration, is in :mod:`meridio.runtime.kubernetes.manifests`.
"""
from __future__ import annotations

from typing import Any

from meridio.api import resources
from meridio.runtime.kubernetes import crds

__all__ = ["NSP_SERVICE_ACCOUNT", "SERVICE_ACCOUNT", "WEBHOOK_SECRET", "nsp_role", "nsp_role_binding",
           "nsp_service_account", "operator_role", "operator_role_binding", "service_account"]

SERVICE_ACCOUNT = "meridio-operator"
WEBHOOK_SECRET = "meridio-webhook-tls"
NSP_SERVICE_ACCOUNT = "meridio-nsp"
_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]


def operator_role(namespace: str) -> dict[str, Any]:
    plurals = list(crds.PLURALS.values())
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": _CRUD},
            {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": _CRUD},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _CRUD},
            {"apiGroups": [resources.GROUP], "resources": plurals, "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": [resources.GROUP], "resources": [f"{p}/status" for p in plurals],
             "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _CRUD},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [WEBHOOK_SECRET],
             "verbs": ["get", "update", "patch"]},
        ],
    }


def service_account(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}}


def operator_role_binding(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }


def nsp_role(namespace: str) -> dict[str, Any]:
    """The NSPs read their trench's ConfigMap through the API: get/list/watch ConfigMaps, nothing else."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": NSP_SERVICE_ACCOUNT, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]}


def nsp_role_binding(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": NSP_SERVICE_ACCOUNT, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NSP_SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": NSP_SERVICE_ACCOUNT, "namespace": namespace}]}


def nsp_service_account(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": NSP_SERVICE_ACCOUNT, "namespace": namespace}}
