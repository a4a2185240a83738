"""Leader election between two operator replicas on a real kube-apiserver: one leads (holds the Lease
and reconciles), the other waits; when the leader stops, the standby takes the Lease and reconciles.

Real: kube-apiserver, the operator's Lease code, kopf, the install's Role (leases are in it).
"""
from __future__ import annotations

import pytest

from meridio.api import configmap, kubeapi
from meridio.runtime.kubernetes import leader
from tests.kube.test_operator import RunningOperator, apply_all, e2e_docs, get_cm, service_account_token
from tests.support.kube import ControlPlane, wait_until

pytestmark = pytest.mark.kube


def test_one_replica_leads_and_the_standby_takes_over_when_it_stops(installed: ControlPlane, namespace: str) -> None:
    assert installed.admin is not None
    creds = kubeapi.Credentials(installed.admin.server, installed.admin.ca_file,
                                token=service_account_token(installed, namespace), namespace=namespace)
    first = RunningOperator(creds, namespace)
    second = RunningOperator(creds, namespace, wait_ready=False)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{leader.LEASE_NAME}"
    try:
        assert first.operator.leading
        lease = installed.admin.get(lease_path)
        assert lease["spec"]["holderIdentity"] == first.operator.identity
        docs = [d for d in e2e_docs() if d["metadata"].get("labels", {}).get("trench") == "trench-b"
                or (d["kind"] == "Trench" and d["metadata"]["name"] == "trench-b")]
        apply_all(installed, namespace, docs)
        wait_until(lambda: get_cm(installed, namespace, "trench-b") is not None, 60, message="the leader's ConfigMap")
        assert not second.operator.leading  # it waited all along
        first.stop()  # a clean stop gives the Lease up
        wait_until(lambda: second.operator.leading, 30, message="the standby leading")
        assert installed.admin.get(lease_path)["spec"]["holderIdentity"] == second.operator.identity
        path = f"/api/v1/namespaces/{namespace}/configmaps/{configmap.configmap_name('trench-b')}"
        want = get_cm(installed, namespace, "trench-b")["data"]
        installed.admin.request("PATCH", path, {"data": {"extra": "x"}}, content_type="application/merge-patch+json")
        wait_until(lambda: get_cm(installed, namespace, "trench-b")["data"] == want, 60,
                   message="the new leader reverting an edit")
    finally:
        if first.thread.is_alive():
            first.stop()
        second.stop()
