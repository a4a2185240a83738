"""The NSP follows its ConfigMap through a real kube-apiserver, with the NSP ServiceAccount's token and
Role (get/list/watch ConfigMaps only): the first configuration, an edit, an invalid edit that keeps the
last good one, a delete that keeps it, and a re-created ConfigMap.

Real: kube-apiserver (tests/kube/conftest.py), the NSP's :class:`~meridio.nsp.source.ConfigMapSource`.
"""
from __future__ import annotations

import asyncio
import contextlib
import pathlib
import threading
from typing import Any

import pytest

from meridio.api import configmap, kubeapi, model, resources
from meridio.nsp import source
from meridio.runtime.kubernetes import rbac
from tests.support.kube import Client, ControlPlane, KubeError, wait_until

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[2]


def cm(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": configmap.configmap_name("trench-a"), "namespace": namespace}, "data": data}


def nsp_token(kube: ControlPlane, ns: str) -> str:
    assert kube.admin is not None
    for obj, path in ((rbac.nsp_service_account(ns), f"/api/v1/namespaces/{ns}/serviceaccounts"),
                      (rbac.nsp_role(ns), f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
                      (rbac.nsp_role_binding(ns), f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")):
        kube.admin.create(path, obj)
    got = kube.admin.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{rbac.NSP_SERVICE_ACCOUNT}/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 3600}})
    return str(got["status"]["token"])


def test_the_nsp_follows_its_configmap_and_keeps_the_last_good_configuration(kube: ControlPlane, namespace: str) -> None:
    assert kube.admin is not None
    objs = resources.load_file(ROOT / "examples" / "e2e" / "init-trench-a.yaml")
    data = configmap.render(objs, "trench-a", "red")  # the example file's namespace
    kube.admin.create(f"/api/v1/namespaces/{namespace}/configmaps", cm(namespace, data))
    creds = kubeapi.Credentials(kube.admin.server, kube.admin.ca_file, token=nsp_token(kube, namespace),
                                namespace=namespace)
    src = source.ConfigMapSource(creds, namespace, configmap.configmap_name("trench-a"),
                                 parse=source.parser_for("trench-a"), retry_s=0.5)
    served: list[model.Configuration] = []
    loop = asyncio.new_event_loop()
    task = loop.create_task(src.run(served.append))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    path = f"/api/v1/namespaces/{namespace}/configmaps/{configmap.configmap_name('trench-a')}"
    try:
        wait_until(lambda: len(served) == 1, 30, message="the first configuration")
        assert {s.name for s in served[0].streams} == {s.name for s in configmap.parse(data).streams}
        edited = dict(data, streams="items:\n- name: stream-a-i\n  conduit: conduit-a-1\n  max-targets: 7\n")
        kube.admin.request("PUT", path, cm(namespace, edited))
        wait_until(lambda: len(served) == 2, 30, message="the edited configuration")
        assert [(s.name, s.max_targets) for s in served[1].streams] == [("stream-a-i", 7)]
        kube.admin.request("PUT", path, cm(namespace, dict(edited, streams="items: [{name: x")))
        wait_until(lambda: src.loads[source.LoadResult.REJECTED] == 1, 30, message="the invalid edit seen")
        kube.admin.delete(path)
        kube.admin.create(f"/api/v1/namespaces/{namespace}/configmaps", cm(namespace, data))
        wait_until(lambda: len(served) == 3, 30, message="the re-created configuration")
        assert served[2] == served[0]
        with pytest.raises(KubeError) as refused:  # the NSP's token reads ConfigMaps and nothing else
            Client(kube.admin.server, creds.token or "", kube.admin.ca_file).get(f"/api/v1/namespaces/{namespace}/secrets")
        assert refused.value.status == 403
    finally:
        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
