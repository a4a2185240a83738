"""Leader election on a ``coordination.k8s.io/v1`` Lease (as client-go's leaderelection does): only the
holder of ``meridio-operator`` in the operator's namespace reconciles, so a Deployment may run a standby
replica that takes over when the leader dies.

The holder renews every ``renew_s``; a lease not renewed for ``duration_s`` may be taken by another
candidate. Writes carry the Lease's resourceVersion, so two candidates racing for an expired lease cannot
both win (the second gets 409 and reads again). A leader that cannot renew within ``duration_s`` stops
leading (its caller stops reconciling) before another may take over.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from meridio.api import kubeapi

__all__ = ["LEASE_NAME", "Elector"]

LEASE_NAME = "meridio-operator"
_log = logging.getLogger("meridio.operator.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)


class Elector:
    def __init__(self, api: kubeapi.Client, namespace: str, identity: str, *, duration_s: int = 15,
                 renew_s: float = 5.0, retry_s: float = 2.0) -> None:
        self.api, self.namespace, self.identity = api, namespace, identity
        self.duration_s, self.renew_s, self.retry_s = duration_s, renew_s, retry_s
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}"

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        now = _micro(_now())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration_s,
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}

    async def try_acquire(self) -> bool:
        """One attempt: True if this candidate holds the lease now."""
        try:
            lease = await self.api.get(self.path)
        except kubeapi.ApiError as exc:
            if exc.status != 404:
                raise
            try:
                await self.api.create(self.path.rsplit("/", 1)[0], {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace}, "spec": self._spec(0)})
            except kubeapi.ApiError as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = spec.get("renewTime")
        expired = renewed is None or _parse(renewed) + datetime.timedelta(
            seconds=int(spec.get("leaseDurationSeconds") or self.duration_s)) < _now()
        if holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        body = {**lease, "spec": self._spec(transitions, spec.get("acquireTime") if holder == self.identity else None)}
        try:
            await self.api.replace(self.path, body)
        except kubeapi.ApiError as exc:
            if exc.status == 409:
                return False
            raise
        if holder != self.identity:
            _log.info("leader election: %s took the lease from %s", self.identity, holder)
        return True

    async def acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire():
                    _log.info("leader election: %s leads", self.identity)
                    return
            except kubeapi.ApiError as exc:
                _log.warning("leader election: %s", exc)
            await asyncio.sleep(self.retry_s)

    async def hold(self) -> None:
        """Renew until a renewal fails for longer than the lease duration (then return: leadership lost)."""
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                if await self.try_acquire():
                    last = asyncio.get_running_loop().time()
                    continue
                _log.warning("leader election: %s lost the lease to another candidate", self.identity)
                return
            except (TimeoutError, kubeapi.ApiError, OSError) as exc:
                _log.warning("leader election: renewal failed: %s", exc)
            if asyncio.get_running_loop().time() - last > self.duration_s - self.renew_s:
                _log.warning("leader election: %s could not renew in time: stepping down", self.identity)
                return

    async def release(self) -> None:
        """Give the lease up (a clean stop): the standby need not wait for it to expire."""
        try:
            lease = await self.api.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["renewTime"] = _micro(_now() - datetime.timedelta(seconds=self.duration_s + 1))
                await self.api.replace(self.path, lease)
        except kubeapi.ApiError as exc:
            _log.info("leader election: release failed: %s", exc)
