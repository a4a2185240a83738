"""A cluster install in a real kube-apiserver: every object of ``meridio render install`` is accepted,
the controllers act on the operator's Deployment (ReplicaSet, then a Pod that stays Pending: no kubelet
runs here), and the operator run with the install's own ServiceAccount, Role and ClusterRole manages its
webhook's certificate: the Secret, the webhook configuration's caBundle, a rotation that keeps the CA.

Real: kube-apiserver + kine + kube-controller-manager (tests/kube/conftest.py), kopf, the webhook
server; the operator runs in this process (outside the cluster: the webhook configuration points at a
127.0.0.1 URL instead of the Service, the one difference from an in-cluster install).
"""
from __future__ import annotations

import asyncio
import base64
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from meridio.api import kubeapi, resources
from meridio.runtime.kubernetes import crds, manifests, rbac, webhookcerts
from meridio.runtime.kubernetes import operator as core
from tests.kube.test_operator import RunningOperator
from tests.support.kube import ControlPlane, KubeError, free_port, wait_until

pytestmark = pytest.mark.kube

_PATHS = {"Namespace": "/api/v1/namespaces", "CustomResourceDefinition":
          "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
          "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
          "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"}
_NAMESPACED = {"ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
               "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
               "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
               "Service": "/api/v1/namespaces/{ns}/services",
               "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments"}


def install(kube: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    assert kube.admin is not None
    objects = manifests.install(namespace, "registry.example/meridio:test")
    for obj in objects:
        path = _PATHS.get(obj["kind"]) or _NAMESPACED[obj["kind"]].format(ns=namespace)
        try:
            kube.admin.create(path, obj)
        except KubeError as exc:
            if not (exc.status == 409 and obj["kind"] == "CustomResourceDefinition"):  # installed by conftest
                raise
    return objects


@pytest.fixture
def installed_ns(installed: ControlPlane) -> Iterator[tuple[ControlPlane, str]]:
    ns = f"mi-{uuid.uuid4().hex[:8]}"
    install(installed, ns)
    try:
        yield installed, ns
    finally:
        assert installed.admin is not None
        for kind, name in (("ClusterRoleBinding", f"meridio-webhook-{ns}"), ("ClusterRole", f"meridio-webhook-{ns}")):
            installed.admin.delete(f"{_PATHS[kind]}/{name}")
        try:
            installed.admin.delete("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                                   + manifests.webhook_configuration_name(ns))
        except KubeError as exc:
            if exc.status != 404:
                raise


def test_every_install_object_is_accepted_and_the_deployment_gets_a_pending_pod(
        installed_ns: tuple[ControlPlane, str]) -> None:
    kube, ns = installed_ns
    assert kube.admin is not None
    pods = wait_until(lambda: kube.admin.get(f"/api/v1/namespaces/{ns}/pods")["items"], 60,  # type: ignore[union-attr]
                      message="a Pod made by the ReplicaSet")
    (pod,) = pods
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["spec"]["serviceAccountName"] == rbac.SERVICE_ACCOUNT
    assert pod["spec"]["containers"][0]["image"] == "registry.example/meridio:test"
    assert pod["status"].get("phase") == "Pending"  # no scheduler, no kubelet: nothing runs it here


def operator_token(kube: ControlPlane, ns: str) -> str:
    assert kube.admin is not None
    got = kube.admin.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{rbac.SERVICE_ACCOUNT}/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 3600}})
    return str(got["status"]["token"])


def test_the_operator_manages_its_webhook_certificate_with_the_installs_rights_only(
        installed_ns: tuple[ControlPlane, str], tmp_path: pathlib.Path) -> None:
    kube, ns = installed_ns
    assert kube.admin is not None
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    creds = kubeapi.Credentials(kube.admin.server, kube.admin.ca_file, token=operator_token(kube, ns), namespace=ns)
    cfg = core.OperatorSettings(namespace=ns, webhook_cert_dir=str(tmp_path / "tls"), webhook_host="127.0.0.1",
                                webhook_port=port, webhook_url=url)
    running = RunningOperator(creds, ns, cfg)
    try:
        secret = kube.admin.get(f"/api/v1/namespaces/{ns}/secrets/{manifests.WEBHOOK_SECRET}")
        ca = base64.b64decode(secret["data"]["ca.crt"])
        config = kube.admin.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                                + manifests.webhook_configuration_name(ns))
        assert {base64.b64decode(h["clientConfig"]["caBundle"]) for h in config["webhooks"]} == {ca}
        served = x509.load_pem_x509_certificate((tmp_path / "tls" / "tls.crt").read_bytes())
        assert served.issuer == x509.load_pem_x509_certificate(ca).subject
        # The API server calls the webhook through that configuration: a stream without its trench is refused.
        stream = {"apiVersion": resources.API_VERSION, "kind": "Stream",
                  "metadata": {"name": "s", "labels": {"trench": "nowhere"}}, "spec": {"conduit": "c"}}
        with pytest.raises(KubeError) as refused:
            kube.admin.create(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/{crds.PLURALS['Stream']}", stream)
        assert refused.value.status == 422 and 'admission webhook "vstream.kb.io" denied' in refused.value.message

        # Rotation at half-life: a new serving certificate, the same CA, so the caBundle stays valid.
        async def rotate() -> bool:
            async with kubeapi.Client(creds) as api:
                return await webhookcerts.ensure(api, ns, tmp_path / "tls", url=url,
                                                 now=time.time() + webhookcerts.LIFETIME_S * 0.6)
        assert asyncio.run(rotate()) is True
        rotated = kube.admin.get(f"/api/v1/namespaces/{ns}/secrets/{manifests.WEBHOOK_SECRET}")
        assert rotated["data"]["ca.crt"] == secret["data"]["ca.crt"]
        assert rotated["data"]["tls.crt"] != secret["data"]["tls.crt"]
        assert (tmp_path / "tls" / "tls.crt").read_bytes() == base64.b64decode(rotated["data"]["tls.crt"])
        with pytest.raises(KubeError) as again:
            kube.admin.create(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/{crds.PLURALS['Stream']}", stream)
        assert again.value.status == 422
    finally:
        running.stop()
