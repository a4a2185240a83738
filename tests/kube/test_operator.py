"""The operator (kopf) against a real kube-apiserver, with its own ServiceAccount's token and the Role
the product ships: the trench ConfigMaps written from the CRs, manual edits reverted, an update that
touches one trench rewrites only that trench's ConfigMap, Ready conditions, and cascade delete by the
garbage collector (kube-controller-manager).

Real: kube-apiserver + kine + kube-controller-manager (tests/kube/conftest.py), kopf, the operator's
handlers, RBAC. No webhook here (tests/kube/test_webhook.py has it).
"""
from __future__ import annotations

import asyncio
import copy
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from meridio.api import configmap, kubeapi, resources
from meridio.runtime.kubernetes import crds, handlers, rbac
from meridio.runtime.kubernetes import operator as core
from tests.support.kube import Client, ControlPlane, KubeError, wait_until

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[2]


def e2e_docs() -> list[dict[str, Any]]:
    out = []
    for name in ("init-trench-a.yaml", "init-trench-b.yaml"):
        for doc in yaml.safe_load_all((ROOT / "examples" / "e2e" / name).read_text()):
            if doc and doc["kind"] in resources.MERIDIO_KINDS:
                out.append(doc)
    return out


class RunningOperator:
    def __init__(self, creds: kubeapi.Credentials, namespace: str, cfg: core.OperatorSettings | None = None, *,
                 wait_ready: bool = True) -> None:
        self.operator = handlers.Operator(cfg or core.OperatorSettings(namespace=namespace), creds)
        self.loop = asyncio.new_event_loop()
        self.stop_flag: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        if wait_ready:
            assert self.ready.wait(60), "the operator did not start"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_flag = asyncio.Event()
            ready = asyncio.Event()
            task = asyncio.create_task(self.operator.run(stop_flag=self.stop_flag, ready_flag=ready))
            readied = asyncio.ensure_future(ready.wait())
            await asyncio.wait([task, readied], return_when=asyncio.FIRST_COMPLETED)  # a standby may never be
            if ready.is_set():
                self.ready.set()
            readied.cancel()
            await task
        self.loop.run_until_complete(main())

    def stop(self) -> None:
        assert self.stop_flag is not None
        self.loop.call_soon_threadsafe(self.stop_flag.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the operator did not stop"


def service_account_token(kube: ControlPlane, namespace: str) -> str:
    assert kube.admin is not None
    kube.admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", rbac.service_account(namespace))
    kube.admin.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", rbac.operator_role(namespace))
    kube.admin.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
                      rbac.operator_role_binding(namespace))
    got = kube.admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{rbac.SERVICE_ACCOUNT}/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 3600}})
    return str(got["status"]["token"])


@pytest.fixture
def operated(installed: ControlPlane, namespace: str) -> Iterator[tuple[ControlPlane, str, str]]:
    assert installed.admin is not None
    token = service_account_token(installed, namespace)
    creds = kubeapi.Credentials(installed.admin.server, installed.admin.ca_file, token=token, namespace=namespace)
    running = RunningOperator(creds, namespace)
    try:
        yield installed, namespace, token
    finally:
        running.stop()


def apply_all(kube: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    assert kube.admin is not None
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        kube.admin.create(f"/apis/{resources.GROUP}/v1/namespaces/{namespace}/{crds.PLURALS[doc['kind']]}", doc)


def get_cm(kube: ControlPlane, namespace: str, trench: str) -> Any:
    assert kube.admin is not None
    try:
        return kube.admin.get(f"/api/v1/namespaces/{namespace}/configmaps/{configmap.configmap_name(trench)}")
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def expected_data(namespace: str, docs: list[dict[str, Any]], trench: str) -> dict[str, str]:
    objs = [resources.parse_object({**d, "metadata": {**d["metadata"], "namespace": namespace}}) for d in docs]
    return configmap.render(objs, trench, namespace)


def test_the_operator_writes_each_trenchs_configmap_owned_by_the_trench_and_marks_objects_ready(
        operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, _ = operated
    docs = e2e_docs()
    apply_all(kube, ns, docs)
    for trench in ("trench-a", "trench-b"):
        want = expected_data(ns, docs, trench)
        cm = wait_until(lambda t=trench, w=want: (c := get_cm(kube, ns, t)) is not None and c.get("data") == w and c,
                        60, message=f"ConfigMap of {trench}")
        trench_obj = kube.admin.get(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/trenches/{trench}")  # type: ignore[union-attr]
        assert cm["metadata"]["ownerReferences"] == [{
            "apiVersion": resources.API_VERSION, "kind": "Trench", "name": trench,
            "uid": trench_obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]

    def conditions() -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for kind, plural in crds.PLURALS.items():
            for item in kube.admin.get(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/{plural}")["items"]:  # type: ignore[union-attr]
                conds = {c["type"]: c for c in item.get("status", {}).get("conditions", [])}
                out[(kind, item["metadata"]["name"])] = conds.get("Ready", {})
        return out

    def settled() -> bool:
        got = conditions()
        return all(c.get("reason") in ("Configured", "WorkloadsNotReady") for c in got.values())
    wait_until(settled, 60, message="every object's Ready condition")
    got = conditions()
    # Objects without workloads of their own are Ready once configured; the others wait for their Pods,
    # which never run here (no kubelet), and say which.
    for (kind, name), cond in got.items():
        if kind in core.WORKLOADS_OF:
            assert (cond["status"], cond["reason"]) == ("False", "WorkloadsNotReady"), (kind, name, cond)
        else:
            assert (cond["status"], cond["reason"]) == ("True", "Configured"), (kind, name, cond)
    assert got[("Trench", "trench-a")]["message"] == "nsp-trench-a: 0/1 ready; ipam-trench-a: 0/1 ready"


def test_a_manual_edit_of_a_configmap_is_reverted(operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, _ = operated
    docs = e2e_docs()
    apply_all(kube, ns, docs)
    want = expected_data(ns, docs, "trench-a")
    wait_until(lambda: (get_cm(kube, ns, "trench-a") or {}).get("data") == want, 60, message="ConfigMap")
    assert kube.admin is not None
    path = f"/api/v1/namespaces/{ns}/configmaps/{configmap.configmap_name('trench-a')}"
    kube.admin.request("PATCH", path, {"data": {"streams": "streams: []\n"}},
                       content_type="application/merge-patch+json")
    wait_until(lambda: (get_cm(kube, ns, "trench-a") or {}).get("data") == want, 60, message="edit reverted")
    kube.admin.request("PATCH", path, {"data": {"extra": "x"}}, content_type="application/merge-patch+json")
    wait_until(lambda: (get_cm(kube, ns, "trench-a") or {}).get("data") == want, 60, message="added key removed")


def test_a_flow_update_rewrites_only_its_trenchs_configmap(operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, _ = operated
    docs = e2e_docs()
    apply_all(kube, ns, docs)
    for trench in ("trench-a", "trench-b"):
        want = expected_data(ns, docs, trench)
        wait_until(lambda t=trench, w=want: (get_cm(kube, ns, t) or {}).get("data") == w, 60, message=trench)
    before_b = get_cm(kube, ns, "trench-b")["metadata"]["resourceVersion"]
    flow = next(d for d in docs if d["kind"] == "Flow" and d["metadata"]["labels"]["trench"] == "trench-a")
    assert kube.admin is not None
    path = f"/apis/{resources.GROUP}/v1/namespaces/{ns}/flows/{flow['metadata']['name']}"
    kube.admin.request("PATCH", path, {"spec": {"priority": 77}}, content_type="application/merge-patch+json")
    changed = copy.deepcopy(docs)
    next(d for d in changed if d["kind"] == "Flow" and d["metadata"]["name"] == flow["metadata"]["name"]
         and d["metadata"]["labels"]["trench"] == "trench-a")["spec"]["priority"] = 77
    want_a = expected_data(ns, changed, "trench-a")
    wait_until(lambda: (get_cm(kube, ns, "trench-a") or {}).get("data") == want_a, 60, message="trench-a rewritten")
    assert get_cm(kube, ns, "trench-b")["metadata"]["resourceVersion"] == before_b


def test_deleting_the_trench_lets_the_garbage_collector_delete_its_configmap(
        operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, _ = operated
    docs = e2e_docs()
    apply_all(kube, ns, docs)
    wait_until(lambda: get_cm(kube, ns, "trench-b") is not None, 60, message="ConfigMap of trench-b")
    assert kube.admin is not None
    kube.admin.delete(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/trenches/trench-b")
    wait_until(lambda: get_cm(kube, ns, "trench-b") is None, 60, message="ConfigMap garbage-collected")
    assert get_cm(kube, ns, "trench-a") is not None


def test_an_object_whose_trench_is_missing_is_not_ready_and_says_why(operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, _ = operated
    vip = {"apiVersion": resources.API_VERSION, "kind": "Vip",
           "metadata": {"name": "stray", "labels": {"trench": "trench-z"}}, "spec": {"address": "203.0.113.9/32"}}
    apply_all(kube, ns, [vip])
    assert kube.admin is not None

    def ready() -> Any:
        item = kube.admin.get(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/vips/stray")  # type: ignore[union-attr]
        return next((c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
    cond = wait_until(ready, 60, message="a Ready condition")
    assert (cond["status"], cond["reason"]) == ("False", "TrenchNotFound")
    assert cond["message"] == f"no Trench 'trench-z' in namespace '{ns}'"


def test_the_operators_token_may_not_read_secrets_or_other_namespaces(operated: tuple[ControlPlane, str, str]) -> None:
    kube, ns, token = operated
    assert kube.admin is not None
    as_operator = Client(kube.admin.server, token, kube.admin.ca_file)
    as_operator.get(f"/api/v1/namespaces/{ns}/configmaps")  # allowed
    for path in (f"/api/v1/namespaces/{ns}/secrets", "/api/v1/namespaces/default/configmaps", "/api/v1/nodes"):
        with pytest.raises(KubeError) as refused:
            as_operator.get(path)
        assert refused.value.status == 403, path
