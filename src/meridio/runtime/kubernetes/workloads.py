"""The one model's workloads as Kubernetes objects (pure): what the operator creates per Trench,
Attractor and Conduit, as Meridio's operator does.

- per Trench: StatefulSets ``nsp-<trench>`` and ``ipam-<trench>`` (one replica, a 1 Gi volume claim for
  their sqlite file) and Services ``nsp-service-<trench>`` (7778) and ``ipam-service-<trench>`` (7777);
- per Attractor: the Deployment ``stateless-lb-frontend-<attractor>`` (``replicas``; a required pod
  anti-affinity on ``kubernetes.io/hostname``: one per node; maxSurge 0, maxUnavailable 25 %; a
  privileged ``sysctl-init`` init container; the ``lb`` and ``frontend`` containers; the Multus
  annotation for a ``network-attachment`` interface) and its PodDisruptionBudget ``pdb-<attractor>``
  (minAvailable 75 %);
- per Conduit: the DaemonSet ``proxy-<conduit>`` (``sysctl-init`` and the ``proxy`` container; the
  node-local link sockets on a hostPath the targets' TAPA reaches).

The containers' arguments and environment come from :func:`meridio.runtime.workloads.containers`,
exactly what the local runtime runs; :class:`KubeSite` says where things are inside the pods (the pod's
name and node from the downward API). Every object is owned by its Meridio object (cascade delete) and
labelled ``app.kubernetes.io/managed-by: meridio-operator``. The ``resource-template`` annotation of the
owner is copied onto the workload (Meridio's convention; the named resources are not applied yet).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from meridio.api import configmap, resources
from meridio.runtime import reconcile as rc
from meridio.runtime import workloads as wl
from meridio.runtime.kubernetes import rbac

__all__ = ["KubeSite", "example_target", "objects", "IMAGE_DEFAULT"]

IMAGE_DEFAULT = "meridio:0.1.0"
_MANAGED = {"app.kubernetes.io/managed-by": "meridio-operator", "app.kubernetes.io/part-of": "meridio"}
_POD_NAME, _POD_NODE, _POD_NAMESPACE = "MERIDIO_POD_NAME", "MERIDIO_POD_NODE", "MERIDIO_POD_NAMESPACE"
_RUN = "/var/lib/meridio"


@dataclasses.dataclass(frozen=True)
class KubeSite:
    """Paths and addresses inside the pods (:class:`meridio.runtime.workloads.Site`)."""

    ipam_ipv4: str = "172.16.0.0/16"
    ipam_ipv6: str = "fd00::/48"
    mtu: int = 1500

    def nsp_address(self, trench: str) -> str:
        return f"nsp-service-{trench}:{wl.NSP_PORT}"

    def ipam_address(self, trench: str) -> str:
        return f"ipam-service-{trench}:{wl.IPAM_PORT}"

    def nsp_template(self) -> str:
        return f"nsp-service-{{trench}}:{wl.NSP_PORT}"

    def nsp_config_file(self, trench: str) -> str:
        return ""  # the NSP watches its ConfigMap through the API (NSP_CONFIG_MAP_NAME)

    def nsp_datasource(self, trench: str) -> str:
        return "/run/nsp/data/registry.db"

    def ipam_datasource(self, trench: str) -> str:
        return "/run/ipam/data/registry.db"

    def ipam_prefixes(self) -> tuple[str, str]:
        return self.ipam_ipv4, self.ipam_ipv6

    def ipam_nodes(self) -> str:
        return ""

    def lb_socket_address(self, pod: str) -> str:
        return f"unix:{_RUN}/lb/lb.sock"

    def lb_bpffs_dir(self, pod: str) -> str:
        return f"/sys/fs/bpf/meridio/{pod}"

    def bird_run_dir(self, pod: str) -> str:
        return "/var/run/bird"

    def secrets_dir(self, namespace: str) -> str:
        return "/etc/meridio/secrets"

    def conduit_mtu(self) -> str:
        return str(self.mtu)

    def proxy_link_socket(self, trench: str, conduit: str, node: str) -> str:
        return f"{_RUN}/proxies/{trench}/{conduit}/{node}/link.sock"

    def proxy_socket_template(self) -> str:
        return f"{_RUN}/proxies/{{trench}}/{{conduit}}/{{node}}/link.sock"

    def pod_netns_template(self) -> str:
        return ""  # no /run/netns names in a cluster: the caller's namespace descriptor and identity prove it

    def tapa_socket_address(self, pod: str) -> str:
        return f"unix:{_RUN}/ambassador.sock"

    def pod_name(self, w: rc.Workload) -> str:
        return f"$({_POD_NAME})"

    def node_name(self, w: rc.Workload) -> str:
        return f"$({_POD_NODE})"

    def target_ports(self, w: rc.Workload) -> tuple[str, str]:
        return "4000,4001,4002", "4003,4004"


def _downward() -> list[dict[str, Any]]:
    return [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in ((_POD_NAME, "metadata.name"), (_POD_NODE, "spec.nodeName"),
                               (_POD_NAMESPACE, "metadata.namespace"))]


_EXTRA: dict[str, list[dict[str, Any]]] = {
    # What the local runtime adds from the pod's network (pods._with_pod_ip): the tunnel ends' addresses.
    "lb": [{"name": "NSM_HOST", "value": f"$({_POD_NODE})"},
           {"name": "NSM_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    "proxy": [{"name": "NSM_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    "tapa": [],
}


def _container(c: wl.Container, image: str, mounts: list[dict[str, Any]],
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = [*_downward(), *_EXTRA.get(c.name, []), *({"name": k, "value": v} for k, v in c.env),
           *({"name": k, "value": v} for k, v in (extra_env or {}).items())]
    out: dict[str, Any] = {
        "name": c.name, "image": image, "imagePullPolicy": "IfNotPresent", "args": list(c.args), "env": env,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in c.ports],
        "volumeMounts": mounts,
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": list(c.capabilities)}}
        if c.capabilities else {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if not out["ports"]:
        del out["ports"]
    return out


def _sysctl_init(image: str) -> dict[str, Any]:
    return {"name": "sysctl-init", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["sysctl", "-w", *(f"{k}={v}" for k, v in wl.SYSCTLS.items())],
            "securityContext": {"privileged": True}}


def _owner(obj: resources.Resource, uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": obj.API_VERSION, "kind": obj.KIND, "name": obj.name, "uid": uid,
             "controller": True, "blockOwnerDeletion": True}]


def _meta(name: str, namespace: str, owner: resources.Resource, uid: str, trench: str,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {**_MANAGED, "trench": trench},
                          "ownerReferences": _owner(owner, uid)}
    template = owner.metadata.annotations_dict.get("resource-template")
    if template or annotations:
        md["annotations"] = {**({"resource-template": template} if template else {}), **(annotations or {})}
    return md


def _statefulset(name: str, service: str, w: rc.Workload, site: KubeSite, image: str, owner: resources.Trench,
                 uid: str, data_dir: str, claim: str, extra_env: dict[str, str] | None = None,
                 service_account: str | None = None) -> dict[str, Any]:
    labels = {"app": name}
    (c,) = wl.containers(w, site)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": _meta(name, owner.namespace, owner, uid, owner.name),
            "spec": {"replicas": 1, "serviceName": service, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, **_MANAGED, "trench": owner.name}},
                                  "spec": {"containers": [_container(c, image, [{"name": claim, "mountPath": data_dir}],
                                                                     extra_env)],
                                           "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                                               "fsGroup": 65532},
                                           **({"serviceAccountName": service_account} if service_account else {})}},
                     "volumeClaimTemplates": [{"metadata": {"name": claim}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}}


def _service(name: str, app: str, port: int, owner: resources.Trench, uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, owner.namespace, owner, uid, owner.name),
            "spec": {"selector": {"app": app}, "ports": [{"name": "grpc", "port": port, "targetPort": port,
                                                         "protocol": "TCP"}]}}


def _fe_lb(attractor: resources.Attractor, w: rc.Workload, site: KubeSite, image: str, uid: str) -> list[dict[str, Any]]:
    name = f"stateless-lb-frontend-{attractor.name}"
    labels = {"app": name}
    mounts: list[dict[str, Any]] = [{"name": "lb-socket", "mountPath": f"{_RUN}/lb"},
                                    {"name": "bird", "mountPath": "/var/run/bird"},
                                    {"name": "bpffs", "mountPath": "/sys/fs/bpf"}]
    fe_mounts = [*mounts, {"name": "bgp-secrets", "mountPath": "/etc/meridio/secrets", "readOnly": True}]
    cs = [_container(c, image, fe_mounts if c.name == "frontend" else mounts) for c in wl.containers(w, site)]
    pod_annotations: dict[str, str] = {}
    itf = attractor.spec.interface
    if itf.type == "network-attachment" and itf.network_attachments:
        nad = itf.network_attachments[0]
        pod_annotations["k8s.v1.cni.cncf.io/networks"] = json.dumps(
            [{"name": nad.name, "namespace": nad.namespace, "interface": nad.interface or itf.name}])
    replicas = 1 if attractor.spec.replicas is None else attractor.spec.replicas
    trench = attractor.trench or ""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, attractor.namespace, attractor, uid, trench),
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}},
                 "template": {
                     "metadata": {"labels": {**labels, **_MANAGED, "trench": trench},
                                  **({"annotations": pod_annotations} if pod_annotations else {})},
                     "spec": {
                         "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                             "labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                         "initContainers": [_sysctl_init(image)], "containers": cs,
                         "volumes": [{"name": "lb-socket", "emptyDir": {}}, {"name": "bird", "emptyDir": {}},
                                     {"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf", "type": "Directory"}},
                                     {"name": "bgp-secrets", "projected": {"sources": []}}]}}}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": _meta(f"pdb-{attractor.name}", attractor.namespace, attractor, uid, trench),
           "spec": {"minAvailable": "75%", "selector": {"matchLabels": labels}}}
    return [deployment, pdb]


def _proxy(conduit: resources.Conduit, w: rc.Workload, site: KubeSite, image: str, uid: str) -> dict[str, Any]:
    name = f"proxy-{conduit.name}"
    labels = {"app": name}
    (c,) = wl.containers(w, site)
    trench = conduit.trench or ""
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": _meta(name, conduit.namespace, conduit, uid, trench),
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, **_MANAGED, "trench": trench}},
                                  "spec": {"initContainers": [_sysctl_init(image)],
                                           "containers": [_container(c, image, [
                                               {"name": "link-sockets", "mountPath": f"{_RUN}/proxies"}])],
                                           "volumes": [{"name": "link-sockets", "hostPath": {
                                               "path": f"{_RUN}/proxies", "type": "DirectoryOrCreate"}}]}}}}


def objects(objs: Sequence[resources.Resource], namespace: str, uids: dict[tuple[str, str], str], *,
            image: str = IMAGE_DEFAULT, site: KubeSite | None = None) -> list[dict[str, Any]]:
    """Every workload object the namespace's Meridio objects ask for; ``uids``: (kind, name) → uid of
    the stored owners (objects whose owner has no uid yet are left out)."""
    site = site or KubeSite()
    mine = [o for o in objs if o.namespace == namespace]
    trenches = {o.name: o for o in mine if isinstance(o, resources.Trench)}
    out: list[dict[str, Any]] = []
    for t, trench in sorted(trenches.items()):
        uid = uids.get(("Trench", t))
        if uid is None:
            continue
        nsp, ipam = rc.trench_templates(trench)
        family = trench.spec.ip_family
        nsp_env = {"NSP_CONFIG_MAP_NAME": configmap.configmap_name(t), "NSP_NAMESPACE": f"$({_POD_NAMESPACE})"}
        out += [_statefulset(f"nsp-{t}", f"nsp-service-{t}", nsp, site, image, trench, uid,
                             "/run/nsp/data", "nsp-data", nsp_env, rbac.NSP_SERVICE_ACCOUNT),
                _service(f"nsp-service-{t}", f"nsp-{t}", wl.NSP_PORT, trench, uid),
                _statefulset(f"ipam-{t}", f"ipam-service-{t}", ipam, site, image, trench, uid,
                             "/run/ipam/data", "ipam-data"),
                _service(f"ipam-service-{t}", f"ipam-{t}", wl.IPAM_PORT, trench, uid)]
        of_trench = sorted((o for o in mine if o.trench == t), key=lambda o: o.name)
        for o in of_trench:
            owner_uid = uids.get((o.KIND, o.name))
            if owner_uid is None:
                continue
            if isinstance(o, resources.Attractor):
                out += _fe_lb(o, rc.attractor_template(o, family), site, image, owner_uid)
        for o in of_trench:
            owner_uid = uids.get((o.KIND, o.name))
            if owner_uid is not None and isinstance(o, resources.Conduit):
                out.append(_proxy(o, rc.proxy_template(o, family), site, image, owner_uid))
    return out


def example_target(namespace: str, name: str = "target-a", *, replicas: int = 4, image: str = IMAGE_DEFAULT,
                   site: KubeSite | None = None) -> dict[str, Any]:
    """The example application with its TAPA sidecar, as Meridio's examples ship it: the same two
    containers the local runtime runs per target pod, the TAPA's identity from the downward API, its
    socket on an emptyDir the application shares, the proxies' link sockets from the node."""
    site = site or KubeSite()
    w = rc.Workload(name, rc.Kind.TARGET, "", namespace=namespace)
    app, tapa = wl.containers(w, site)
    labels = {"app": name}
    socket_mount = {"name": "tapa-socket", "mountPath": _RUN}
    links = {"name": "link-sockets", "mountPath": f"{_RUN}/proxies", "readOnly": True}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "meridio"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [_container(app, image, [socket_mount]),
                                        _container(tapa, image, [socket_mount, links])],
                         "volumes": [{"name": "tapa-socket", "emptyDir": {}},
                                     {"name": "link-sockets", "hostPath": {"path": f"{_RUN}/proxies",
                                                                           "type": "DirectoryOrCreate"}}]}}}}
