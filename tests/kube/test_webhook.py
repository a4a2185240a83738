"""The validating admission webhook, called by a real kube-apiserver over TLS: Meridio's cross-object
and update rules refuse through the API what ``meridio validate`` refuses, with its messages, and a
whole e2e trench is accepted.

Real: kube-apiserver (tests/kube/conftest.py), the webhook server (aiohttp, HTTPS with a certificate
the webhook configuration's caBundle names), the API client the webhook lists objects with. The
webhook configuration selects only this module's namespaces (a label), so other tests see none of it.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import pathlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from meridio.api import kubeapi, resources
from meridio.runtime.kubernetes import admission, crds, webhook
from tests.support.kube import ControlPlane, KubeError, serving_cert

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[2]
LABEL = "meridio-webhook-test"


class Running:
    """The webhook server on its own event loop in a thread."""

    def __init__(self, kube: ControlPlane, cert: pathlib.Path, key: pathlib.Path) -> None:
        assert kube.admin is not None
        self.loop = asyncio.new_event_loop()
        self.creds = kubeapi.Credentials(kube.admin.server, kube.admin.ca_file, token=kube.admin.token)
        self.cert, self.key = cert, key
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: webhook.WebhookServer = self._call(self._start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> webhook.WebhookServer:
        self.api = kubeapi.Client(self.creds)
        await self.api.__aenter__()
        server = webhook.WebhookServer(webhook.api_lister(self.api), cert_file=str(self.cert),
                                       key_file=str(self.key), host="127.0.0.1", port=0)
        await server.start()
        return server

    def stop(self) -> None:
        async def stop() -> None:
            await self.server.stop()
            await self.api.close()
        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def configuration(name: str, port: int, ca: bytes, selector: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": admission.webhook_name(kind),
            "clientConfig": {"url": f"https://127.0.0.1:{port}{admission.path_for(kind)}",
                             "caBundle": base64.b64encode(ca).decode()},
            "rules": [{"apiGroups": [resources.GROUP], "apiVersions": ["v1", "v1alpha1"],
                       "operations": ["CREATE", "UPDATE"], "resources": [plural], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {LABEL: selector}},
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
        } for kind, plural in crds.PLURALS.items()],
    }


@pytest.fixture(scope="module")
def hooked(installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, str]]:
    assert installed.admin is not None
    serving = serving_cert(tmp_path_factory.mktemp("webhook"), "webhook")
    running = Running(installed, serving.cert, serving.key)
    selector = uuid.uuid4().hex[:8]
    name = f"meridio-test-{selector}"
    installed.admin.create("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                           configuration(name, running.server.port, serving.ca.read_bytes(), selector))
    try:
        yield installed, selector
    finally:
        installed.admin.delete(f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}")
        running.stop()


@pytest.fixture
def ns(hooked: tuple[ControlPlane, str]) -> str:
    kube, selector = hooked
    assert kube.admin is not None
    name = f"wh-{uuid.uuid4().hex[:8]}"
    kube.admin.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name, "labels": {LABEL: selector}}})
    return name


def create(kube: ControlPlane, namespace: str, doc: dict[str, Any]) -> Any:
    assert kube.admin is not None
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    plural = crds.PLURALS[doc["kind"]]
    return kube.admin.create(f"/apis/{resources.GROUP}/v1/namespaces/{namespace}/{plural}", doc)


def trench_a() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "examples" / "e2e" / "init-trench-a.yaml").read_text())
    return [d for d in docs if d and d["kind"] in resources.MERIDIO_KINDS]


def test_the_e2e_trench_is_accepted_object_by_object_through_the_webhook(hooked: tuple[ControlPlane, str],
                                                                          ns: str) -> None:
    kube, _ = hooked
    docs = trench_a()
    for doc in docs:
        create(kube, ns, doc)
    assert kube.admin is not None
    stored = kube.admin.get(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/attractors")["items"]
    assert {a["metadata"]["name"] for a in stored} == {d["metadata"]["name"] for d in docs if d["kind"] == "Attractor"}


def test_a_conduit_shared_by_two_attractors_is_refused_by_the_api_server_with_meridios_message(
        hooked: tuple[ControlPlane, str], ns: str) -> None:
    kube, _ = hooked
    docs = trench_a()
    for doc in docs:
        create(kube, ns, doc)
    first = next(d for d in docs if d["kind"] == "Attractor")
    second = copy.deepcopy(first)
    second["metadata"]["name"] = "attractor-a-9"
    second["spec"]["interface"]["name"] = "ext-vlan9"
    second["spec"]["vips"] = []
    second["spec"]["gateways"] = []
    with pytest.raises(KubeError) as refused:
        create(kube, ns, second)
    assert refused.value.status == 422
    conduit = first["spec"]["composites"][0]
    assert refused.value.message == (
        f'admission webhook "vattractor.kb.io" denied the request: Attractor.meridio.nordix.org "attractor-a-9" '
        f'is invalid: spec.composites: Invalid value: ["{conduit}"]: a conduit cannot be shared between 2 '
        f'attractors in this version')
    assert kube.admin is not None
    with pytest.raises(KubeError) as gone:
        kube.admin.get(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/attractors/attractor-a-9")
    assert gone.value.status == 404


def test_an_update_of_an_immutable_field_is_refused_and_the_stored_object_stays(hooked: tuple[ControlPlane, str],
                                                                                ns: str) -> None:
    kube, _ = hooked
    assert kube.admin is not None
    trench = next(d for d in trench_a() if d["kind"] == "Trench")
    stored = create(kube, ns, trench)
    changed = copy.deepcopy(stored)
    changed["spec"]["ip-family"] = "ipv4"
    path = f"/apis/{resources.GROUP}/v1/namespaces/{ns}/trenches/{trench['metadata']['name']}"
    with pytest.raises(KubeError) as refused:
        kube.admin.request("PUT", path, changed)
    assert refused.value.status == 422
    assert 'admission webhook "vtrench.kb.io" denied the request' in refused.value.message
    assert "spec.ip-family" in refused.value.message
    assert kube.admin.get(path)["spec"]["ip-family"] == "dualstack"


def test_a_resource_without_its_trench_is_refused_and_in_an_unselected_namespace_it_is_not_judged(
        hooked: tuple[ControlPlane, str], ns: str) -> None:
    kube, _ = hooked
    conduit = next(d for d in trench_a() if d["kind"] == "Conduit")
    with pytest.raises(KubeError) as refused:
        create(kube, ns, conduit)  # no Trench in this namespace
    assert refused.value.status == 422 and 'denied the request: Conduit.meridio.nordix.org' in refused.value.message
    plain = kube.namespace("plain")  # not selected by the webhook configuration: schema checks only
    assert create(kube, plain, conduit)["metadata"]["name"] == conduit["metadata"]["name"]
