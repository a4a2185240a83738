"""The operator's workloads in a real kube-apiserver with the garbage collector and the workload
controllers: per Trench the NSP and IPAM StatefulSets and Services, per Attractor the FE+LB Deployment
and its PodDisruptionBudget, per Conduit the proxy DaemonSet (one Pod per registered Node); an update
of one object changes only the objects it concerns; deleting an Attractor deletes its workloads.
No kubelet: Pods are created by the controllers and stay Pending.
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from meridio.api import resources
from meridio.runtime import workloads as wl
from tests.kube.test_operator import apply_all, e2e_docs, operated  # noqa: F401 - the fixture
from tests.support.kube import ControlPlane, KubeError, wait_until

pytestmark = pytest.mark.kube

APPS = "/apis/apps/v1/namespaces/{ns}"


def get(kube: ControlPlane, path: str) -> Any:
    assert kube.admin is not None
    try:
        return kube.admin.get(path)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def trench_a() -> list[dict[str, Any]]:
    return [d for d in e2e_docs() if d["kind"] == "Trench" and d["metadata"]["name"] == "trench-a"
            or d["metadata"].get("labels", {}).get("trench") == "trench-a"]


def test_each_meridio_object_gets_its_workloads_with_the_one_models_containers(
        operated: tuple[ControlPlane, str, str]) -> None:  # noqa: F811
    kube, ns, _ = operated
    apply_all(kube, ns, trench_a())
    apps = APPS.format(ns=ns)
    nsp = wait_until(lambda: get(kube, f"{apps}/statefulsets/nsp-trench-a"), 60, message="the NSP StatefulSet")
    (container,) = nsp["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"] == ["run", "nsp"]
    assert env["NSP_PORT"] == str(wl.NSP_PORT) and env["NSP_CONFIG_MAP_NAME"] == "meridio-configuration-trench-a"
    assert nsp["metadata"]["ownerReferences"][0]["kind"] == "Trench"
    for path in (f"{apps}/statefulsets/ipam-trench-a", f"/api/v1/namespaces/{ns}/services/nsp-service-trench-a",
                 f"/api/v1/namespaces/{ns}/services/ipam-service-trench-a",
                 f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/pdb-attractor-a-1",
                 f"{apps}/daemonsets/proxy-conduit-a-1"):
        wait_until(lambda p=path: get(kube, p), 60, message=path)
    fe = wait_until(lambda: get(kube, f"{apps}/deployments/stateless-lb-frontend-attractor-a-1"), 60, message="FE+LB")
    spec = fe["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["lb", "frontend"]
    assert spec["initContainers"][0]["securityContext"] == {"privileged": True}
    assert spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "topologyKey"] == "kubernetes.io/hostname"
    attractor = next(d for d in trench_a() if d["kind"] == "Attractor" and d["metadata"]["name"] == "attractor-a-1")
    assert fe["spec"]["replicas"] == attractor["spec"].get("replicas", 1)
    # the Deployment controller made a ReplicaSet and it the Pods (Pending: no kubelet here)
    wait_until(lambda: len([p for p in kube.admin.get(f"/api/v1/namespaces/{ns}/pods")["items"]  # type: ignore[union-attr]
                            if p["metadata"]["name"].startswith("stateless-lb-frontend-attractor-a-1-")])
               == fe["spec"]["replicas"], 60, message="FE+LB pods")


def test_the_proxy_daemonset_makes_one_pod_per_registered_node(operated: tuple[ControlPlane, str, str]) -> None:  # noqa: F811
    kube, ns, _ = operated
    assert kube.admin is not None
    for _ in range(2):
        kube.register_node(f"node-{uuid.uuid4().hex[:6]}")
    apply_all(kube, ns, trench_a())
    nodes = {n["metadata"]["name"] for n in kube.admin.get("/api/v1/nodes")["items"]}

    def proxy_pods() -> set[str]:
        pods = kube.admin.get(f"/api/v1/namespaces/{ns}/pods")["items"]  # type: ignore[union-attr]
        out = set()
        for p in pods:
            if p["metadata"]["name"].startswith("proxy-conduit-a-1-"):
                terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                out.add(terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0])
        return out
    wait_until(lambda: proxy_pods() == nodes, 60, message=f"a proxy pod on each of {sorted(nodes)}")


def test_an_update_changes_only_the_objects_it_concerns_and_a_delete_removes_them(
        operated: tuple[ControlPlane, str, str]) -> None:  # noqa: F811
    kube, ns, _ = operated
    assert kube.admin is not None
    apply_all(kube, ns, trench_a())
    apps = APPS.format(ns=ns)
    names = [f"{apps}/deployments/stateless-lb-frontend-attractor-a-1", f"{apps}/deployments/stateless-lb-frontend-attractor-a-2",
             f"{apps}/statefulsets/nsp-trench-a", f"{apps}/daemonsets/proxy-conduit-a-1"]
    for path in names:
        wait_until(lambda p=path: get(kube, p), 60, message=path)
    # generation counts spec changes only (controllers writing status bump resourceVersion, not it)
    before = {p: get(kube, p)["metadata"]["generation"] for p in names}
    path = f"/apis/{resources.GROUP}/v1/namespaces/{ns}/attractors/attractor-a-2"
    kube.admin.request("PATCH", path, {"spec": {"replicas": 3}}, content_type="application/merge-patch+json")
    wait_until(lambda: get(kube, names[1])["spec"]["replicas"] == 3, 60, message="replicas 3")
    after = {p: get(kube, p)["metadata"]["generation"] for p in names}
    assert [p for p in names if after[p] != before[p]] == [names[1]]
    kube.admin.delete(path)
    wait_until(lambda: get(kube, names[1]) is None, 60, message="the Deployment garbage-collected")
    wait_until(lambda: get(kube, f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/pdb-attractor-a-2") is None,
               60, message="the PDB garbage-collected")
    assert get(kube, names[0]) is not None



def test_a_workload_deleted_by_hand_comes_back(operated: tuple[ControlPlane, str, str]) -> None:  # noqa: F811
    kube, ns, _ = operated
    assert kube.admin is not None
    apply_all(kube, ns, trench_a())
    path = f"{APPS.format(ns=ns)}/deployments/stateless-lb-frontend-attractor-a-1"
    first = wait_until(lambda: get(kube, path), 60, message="the FE+LB Deployment")
    kube.admin.delete(path)
    again = wait_until(lambda: (d := get(kube, path)) is not None and d["metadata"]["uid"] != first["metadata"]["uid"]
                       and d, 60, message="the Deployment made again")
    assert again["spec"]["template"]["spec"]["containers"] == first["spec"]["template"]["spec"]["containers"]
