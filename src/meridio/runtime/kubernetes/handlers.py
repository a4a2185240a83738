"""The operator's kopf handlers (the adapter around :mod:`meridio.runtime.kubernetes.operator`).

Run with ``meridio operator --namespace NS``.
Only event handlers are used, so kopf puts no finalizers or annotations on the user's objects: every
event of a Meridio object, or of a ConfigMap the operator manages, re-reads the namespace and applies
what differs (coalesced: one reconcile runs per namespace at a time, and one more if events came
meanwhile). Credentials: ``KUBECONFIG`` when set, else the pod's ServiceAccount.

With a webhook certificate directory (``tls.crt`` and ``tls.key``, as a ``kubernetes.io/tls`` Secret
mounts them) the admission webhook is served from the same process (port 9443), as Meridio's operator
does.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import pathlib
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from meridio.api import kubeapi, resources
from meridio.runtime.kubernetes import crds, leader, manifests, webhook, webhookcerts
from meridio.runtime.kubernetes import operator as core
from meridio.runtime.kubernetes import workloads as kubeworkloads

if TYPE_CHECKING:
    import kopf

_log = logging.getLogger("meridio.operator")
_CERT_CHECK_S = 3600.0


def credentials() -> kubeapi.Credentials:
    path = os.environ.get("KUBECONFIG")
    return kubeapi.from_kubeconfig(path) if path else kubeapi.in_cluster()


@dataclasses.dataclass
class _Namespace:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    dirty: bool = False


_COLLECTIONS = {"StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
                "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
                "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
                "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
                "Service": "/api/v1/namespaces/{ns}/services"}


def _object_path(obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    return f"{_COLLECTIONS[obj['kind']].format(ns=md['namespace'])}/{md['name']}"


class Reconciler:
    def __init__(self, api: kubeapi.Client, image: str = kubeworkloads.IMAGE_DEFAULT) -> None:
        self.api = api
        self.image = image
        self._namespaces: dict[str, _Namespace] = {}
        self.runs = 0

    async def trigger(self, namespace: str) -> None:
        state = self._namespaces.setdefault(namespace, _Namespace())
        state.dirty = True
        if state.lock.locked():
            return  # the running reconcile goes round once more
        async with state.lock:
            while state.dirty:
                state.dirty = False
                await self.reconcile(namespace)

    async def _apply_workloads(self, namespace: str, objs: list[resources.Resource],
                               raw: dict[tuple[str, str], Any]) -> None:
        """Server-side apply of every workload object, every round: an unchanged one is a no-op on the
        server (no new generation, nothing touched), and one deleted or edited by hand comes back. (A
        cache of what was applied last would skip exactly those.)"""
        uids = {key: item["metadata"]["uid"] for key, item in raw.items()}
        for obj in kubeworkloads.objects(objs, namespace, uids, image=self.image):
            path = _object_path(obj)
            try:
                await self.api.apply(path, obj, core.FIELD_MANAGER)
            except kubeapi.ApiError as exc:
                if exc.status < 400 or exc.status >= 500:
                    raise  # the API away: kopf retries the handler
                # refused (a cluster policy, a quota): the others go on; the next event tries again
                _log.warning("%s %s refused: %s", obj["kind"], obj["metadata"]["name"], exc)
                continue
            _log.debug("%s %s applied", obj["kind"], obj["metadata"]["name"])

    async def _workloads(self, namespace: str) -> dict[tuple[str, str], Any]:
        """The namespace's operator-made workloads as stored (with their status)."""
        out: dict[tuple[str, str], Any] = {}
        for plural in ("statefulsets", "deployments", "daemonsets"):
            listed = await self.api.get(f"/apis/apps/v1/namespaces/{namespace}/{plural}",
                                        labelSelector="app.kubernetes.io/managed-by=meridio-operator")
            for item in listed.get("items", []):
                out[(plural, item["metadata"]["name"])] = item
        return out

    async def reconcile(self, namespace: str) -> None:
        self.runs += 1
        stored = await crds.list_stored(self.api, namespace)
        objs, raw = stored.objects, stored.raw
        want = core.desired(objs, namespace)
        for trench, cm in want.configmaps.items():
            owner = raw[("Trench", trench)]
            body = core.configmap_object(cm, owner["metadata"]["uid"], trench)
            path = f"/api/v1/namespaces/{namespace}/configmaps/{cm['metadata']['name']}"
            try:
                current = await self.api.get(path)
            except kubeapi.ApiError as exc:
                if exc.status != 404:
                    raise
                current = None
            if current is None:
                try:
                    await self.api.create(f"/api/v1/namespaces/{namespace}/configmaps", body)
                except kubeapi.ApiError as exc:
                    if exc.status != 409:  # made meanwhile: its event brings the next round
                        raise
                    continue
                _log.info("configmap %s created", cm["metadata"]["name"])
            elif current.get("data") != body["data"] or \
                    current["metadata"].get("ownerReferences") != body["metadata"]["ownerReferences"] or \
                    any(current["metadata"].get("labels", {}).get(k) != v for k, v in body["metadata"]["labels"].items()):
                # A whole replace, not an apply: a key someone added must go too (an apply leaves fields
                # other managers own). The resourceVersion makes a concurrent edit fail (409) rather than
                # be lost; its own event brings the next round.
                replaced = {**body, "metadata": {**body["metadata"],
                                                 "resourceVersion": current["metadata"]["resourceVersion"]}}
                try:
                    await self.api.replace(path, replaced)
                except kubeapi.ApiError as exc:
                    if exc.status != 409:
                        raise
                    _log.info("configmap %s changed meanwhile: next round", cm["metadata"]["name"])
                    continue
                _log.info("configmap %s rewritten", cm["metadata"]["name"])
        await self._apply_workloads(namespace, objs, raw)
        workloads = await self._workloads(namespace)
        now = datetime.datetime.now(datetime.UTC)
        for (kind, name), configured in want.conditions.items():
            condition = core.readiness(kind, name, configured, workloads)
            item = raw.get((kind, name))
            if item is None:
                continue
            status = item.get("status") or {}
            conditions = core.condition_patch(status.get("conditions") or [], condition,
                                              int(item["metadata"].get("generation", 0)), now)
            if conditions is None:
                continue
            path = f"/apis/{resources.GROUP}/v1/namespaces/{namespace}/{crds.PLURALS[kind]}/{name}/status"
            try:
                await self.api.merge_patch(path, {"status": {
                    "conditions": conditions, "observedGeneration": int(item["metadata"].get("generation", 0))}})
            except kubeapi.ApiError as exc:
                if exc.status != 404:  # deleted meanwhile
                    raise


class Operator:
    """The operator's handlers in a kopf registry of their own (no import-time side effects)."""

    def __init__(self, cfg: core.OperatorSettings, creds: kubeapi.Credentials | None = None) -> None:
        """``creds``: the API and token to use (default: ``KUBECONFIG`` or the pod's ServiceAccount)."""
        self.cfg = cfg
        self._creds = creds
        self.reconciler: Reconciler | None = None
        self.webhook: webhook.WebhookServer | None = None
        self._certs_task: asyncio.Task[None] | None = None
        self.identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        """This candidate's name in the leader Lease (the pod name, and a suffix for restarts)."""
        self.leading = False
        import kopf  # here, not at the top: every meridio command would pay for importing it

        self._kopf = kopf
        self.registry = kopf.OperatorRegistry()
        on = kopf.on
        on.startup(registry=self.registry)(self._startup)
        on.cleanup(registry=self.registry)(self._cleanup)
        on.login(registry=self.registry)(self._login)
        for plural in crds.PLURALS.values():
            on.event(resources.GROUP, "v1", plural, registry=self.registry, id=f"meridio-{plural}")(self._on_event)
        on.event("", "v1", "configmaps", labels=core.MANAGED_BY, registry=self.registry,
                 id="meridio-configmaps")(self._on_event)
        for plural in ("statefulsets", "deployments", "daemonsets"):  # their status: the Ready conditions
            on.event("apps", "v1", plural, labels=core.MANAGED_BY, registry=self.registry,
                     id=f"meridio-{plural}")(self._on_event)

    async def _startup(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # no Events: the conditions say it, and the Role needs no events verb
        settings.watching.server_timeout = 300
        settings.scanning.disabled = True  # a namespaced Role: no cluster-wide CRD/namespace observation
        api = kubeapi.Client(self._creds or credentials())
        await api.__aenter__()
        self.reconciler = Reconciler(api, self.cfg.image)
        if self.cfg.webhook_cert_dir:
            if self.cfg.webhook_certs == "operator":
                await self._ensure_certs(api)
                self._certs_task = asyncio.create_task(self._refresh_certs(api))
            self.webhook = webhook.WebhookServer(
                webhook.api_lister(api), cert_file=os.path.join(self.cfg.webhook_cert_dir, "tls.crt"),
                key_file=os.path.join(self.cfg.webhook_cert_dir, "tls.key"), host=self.cfg.webhook_host,
                port=self.cfg.webhook_port)
            await self.webhook.start()

    async def _ensure_certs(self, api: kubeapi.Client) -> None:
        if await webhookcerts.ensure(api, self.cfg.namespace, pathlib.Path(self.cfg.webhook_cert_dir),
                                     now=time.time(), url=self.cfg.webhook_url):
            _log.info("webhook certificate issued (Secret %s)", manifests.WEBHOOK_SECRET)

    async def _refresh_certs(self, api: kubeapi.Client) -> None:
        while True:
            await asyncio.sleep(_CERT_CHECK_S)
            try:
                await self._ensure_certs(api)
            except kubeapi.ApiError as exc:  # a 409 (written meanwhile) or the API away: next round
                _log.warning("webhook certificate check failed: %s", exc)

    async def _cleanup(self, **_: Any) -> None:
        if self._certs_task is not None:
            self._certs_task.cancel()
        if self.webhook is not None:
            await self.webhook.stop()
        if self.reconciler is not None:
            await self.reconciler.api.close()

    def _login(self, **_: Any) -> kopf.ConnectionInfo:
        creds = self._creds or credentials()
        return self._kopf.ConnectionInfo(server=creds.server, ca_path=creds.ca_file, token=creds.bearer(),
                                   certificate_path=creds.cert_file, private_key_path=creds.key_file,
                                   default_namespace=creds.namespace)

    async def _on_event(self, namespace: str | None, **_: Any) -> None:
        if namespace and self.reconciler is not None:
            await self.reconciler.trigger(namespace)

    async def run(self, stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
        """Run until ``stop_flag`` is set (or a signal); with leader election (the default), reconcile only
        while holding the Lease, and return when it is lost (the Deployment restarts the pod)."""
        stop = stop_flag or asyncio.Event()
        if not self.cfg.leader_election:
            await self._operate(stop, ready_flag)
            return
        async with kubeapi.Client(self._creds or credentials()) as api:
            elector = leader.Elector(api, self.cfg.namespace, self.identity)
            acquiring = asyncio.ensure_future(elector.acquire())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([acquiring, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not acquiring.done():
                acquiring.cancel()
                return
            self.leading = True
            inner = asyncio.Event()
            operating = asyncio.ensure_future(self._operate(inner, ready_flag))
            holding = asyncio.ensure_future(elector.hold())
            await asyncio.wait([operating, holding, stopping], return_when=asyncio.FIRST_COMPLETED)
            inner.set()
            holding.cancel()
            await asyncio.gather(operating, return_exceptions=True)
            self.leading = False
            if stopping.done():
                await elector.release()
            stopping.cancel()

    async def _operate(self, stop: asyncio.Event, ready_flag: asyncio.Event | None) -> None:
        await self._kopf.operator(registry=self.registry, standalone=True, namespaces=[self.cfg.namespace],
                                  clusterwide=False, stop_flag=stop, ready_flag=ready_flag)


__all__ = ["Operator", "Reconciler", "credentials"]
