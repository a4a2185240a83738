"""What a cluster install consists of, as Kubernetes objects (pure): the namespace, the CRDs, the
operator's ServiceAccount, Role, RoleBinding, the ClusterRole for its one webhook configuration, the
operator Deployment (which also serves the admission webhook) and the webhook's Service, and the
ValidatingWebhookConfiguration the operator keeps current (its caBundle).

``deploy/kubernetes/base/`` (kustomize) and ``deploy/helm/meridio/`` (Helm) are rendered from
:func:`install` (``meridio render install``), so the two packagings hold the same objects.
"""
from __future__ import annotations

import base64
from typing import Any

from meridio import __version__
from meridio.api import resources
from meridio.runtime.kubernetes import admission, crds, rbac
from meridio.runtime.kubernetes import workloads as kubeworkloads

__all__ = ["IMAGE", "WEBHOOK_PORT", "WEBHOOK_SECRET", "WEBHOOK_SERVICE", "install", "operator_deployment",
           "webhook_cluster_role", "webhook_cluster_role_binding", "webhook_configuration",
           "webhook_configuration_name", "webhook_service"]

IMAGE = f"meridio:{__version__}"
WEBHOOK_SERVICE = "meridio-webhook"
WEBHOOK_SECRET = rbac.WEBHOOK_SECRET
WEBHOOK_PORT = 9443
_LABELS = {"app.kubernetes.io/name": "meridio-operator", "app.kubernetes.io/part-of": "meridio"}


def webhook_configuration_name(namespace: str) -> str:
    return f"meridio-{namespace}"


def webhook_configuration(namespace: str, ca_pem: bytes = b"", *, url: str = "") -> dict[str, Any]:
    """Meridio's seven webhooks, for objects of ``namespace`` only; through the Service, or ``url``
    (an operator run outside the cluster, as the tests do)."""
    hooks = []
    for kind, plural in crds.PLURALS.items():
        client: dict[str, Any] = (
            {"url": url.rstrip("/") + admission.path_for(kind)} if url else
            {"service": {"name": WEBHOOK_SERVICE, "namespace": namespace, "path": admission.path_for(kind),
                         "port": 443}})
        if ca_pem:
            client["caBundle"] = base64.b64encode(ca_pem).decode()
        hooks.append({
            "name": admission.webhook_name(kind), "clientConfig": client,
            "rules": [{"apiGroups": [resources.GROUP], "apiVersions": ["v1", "v1alpha1"],
                       "operations": ["CREATE", "UPDATE"], "resources": [plural], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
        })
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": webhook_configuration_name(namespace), "labels": dict(_LABELS)},
            "webhooks": hooks}


def webhook_cluster_role(namespace: str) -> dict[str, Any]:
    """The one cluster-scoped right: the operator's own webhook configuration (create cannot be limited
    to a name; the others are)."""
    name = webhook_configuration_name(namespace)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"meridio-webhook-{namespace}", "labels": dict(_LABELS)},
            "rules": [
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
                 "verbs": ["create"]},
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
                 "resourceNames": [name], "verbs": ["get", "update", "patch"]},
            ]}


def webhook_cluster_role_binding(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"meridio-webhook-{namespace}", "labels": dict(_LABELS)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": f"meridio-webhook-{namespace}"},
            "subjects": [{"kind": "ServiceAccount", "name": rbac.SERVICE_ACCOUNT, "namespace": namespace}]}


def webhook_service(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": WEBHOOK_SERVICE, "namespace": namespace, "labels": dict(_LABELS)},
            "spec": {"selector": dict(_LABELS),
                     "ports": [{"name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"}]}}


def operator_deployment(namespace: str, image: str = IMAGE) -> dict[str, Any]:
    """One replica (the handlers are idempotent; a second replica would only do the same work twice)."""
    container = {
        "name": "operator", "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["operator"],
        "env": [{"name": "MERIDIO_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "MERIDIO_WEBHOOK_CERT_DIR", "value": "/run/meridio/webhook"},
                {"name": "MERIDIO_WEBHOOK_CERTS", "value": "operator"},
                {"name": "MERIDIO_IMAGE", "value": image}],
        "ports": [{"name": "webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": WEBHOOK_PORT}, "periodSeconds": 10, "timeoutSeconds": 3,
                           "failureThreshold": 5},
        "livenessProbe": {"tcpSocket": {"port": WEBHOOK_PORT}, "initialDelaySeconds": 30, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "webhook-tls", "mountPath": "/run/meridio/webhook"},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "meridio-operator", "namespace": namespace, "labels": dict(_LABELS)},
            "spec": {"replicas": 1, "selector": {"matchLabels": dict(_LABELS)},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": dict(_LABELS)},
                                  "spec": {"serviceAccountName": rbac.SERVICE_ACCOUNT, "containers": [container],
                                           "volumes": [{"name": "webhook-tls", "emptyDir": {"medium": "Memory"}},
                                                       {"name": "tmp", "emptyDir": {}}]}}}}


def install(namespace: str, image: str = IMAGE) -> list[dict[str, Any]]:
    """Every object of a cluster install, in the order to apply them."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *crds.crds(),
        rbac.service_account(namespace), rbac.operator_role(namespace), rbac.operator_role_binding(namespace),
        rbac.nsp_service_account(namespace), rbac.nsp_role(namespace), rbac.nsp_role_binding(namespace),
        webhook_cluster_role(namespace), webhook_cluster_role_binding(namespace),
        webhook_service(namespace), operator_deployment(namespace, image),
    ]


_NS, _IMAGE = "meridio-placeholder-namespace", "meridio-placeholder-image"
HELM_NAMESPACE, HELM_IMAGE = "{{ .Release.Namespace }}", "{{ .Values.image }}"
KUSTOMIZE_NAMESPACE = "meridio"


def packaging_files(dump: Any) -> dict[str, str]:
    """The kustomize base and the Helm chart, as ``{path under deploy/: text}``; ``dump`` writes a list of
    objects as multi-document YAML. The chart's templates are :func:`install` with the namespace and the
    image as Helm expressions; its CRDs go in ``crds/`` (Helm installs them first and never templates them)."""
    objects = install(_NS, _IMAGE)
    namespaced = [o for o in objects if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    templated = dump(namespaced).replace(_NS, HELM_NAMESPACE).replace(_IMAGE, HELM_IMAGE)
    base = install(KUSTOMIZE_NAMESPACE)
    return {
        "kubernetes/crds/meridio.nordix.org.yaml": dump(crds.crds()),
        "kubernetes/base/install.yaml": dump(base),
        "kubernetes/base/kustomization.yaml": dump([{
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["install.yaml"],
            "images": [{"name": "meridio", "newTag": __version__}],
        }]),
        "helm/meridio/Chart.yaml": dump([{
            "apiVersion": "v2", "name": "meridio", "version": __version__, "appVersion": __version__,
            "description": "Meridio in Python: CRDs, the operator and its admission webhook", "type": "application",
        }]),
        "helm/meridio/values.yaml": dump([{"image": IMAGE}]),
        "helm/meridio/crds/meridio.nordix.org.yaml": dump(crds.crds()),
        "helm/meridio/templates/operator.yaml": templated,
        "kubernetes/examples/target-a.yaml": dump([kubeworkloads.example_target("red")]),
    }
