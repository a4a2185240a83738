"""The validating admission webhook server: HTTPS (aiohttp), one path per Meridio kind, THE validator.

The API server POSTs an AdmissionReview to ``/validate-meridio-nordix-org-v1-<kind>``; the server lists
the namespace's Meridio objects through the API (its ServiceAccount may get/list the seven kinds) and
answers with :func:`meridio.runtime.kubernetes.admission.review`. Bodies are bounded (3 MiB, the API
server's own request limit), a review must arrive within 10 s, and the serving certificate is re-read
when its files change (checked every 10 s: rotation without a restart). ``/healthz`` answers ``ok``.
"""
from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from meridio.api import kubeapi, resources
from meridio.common import log as logmod
from meridio.runtime.kubernetes import admission, crds

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MAX_BODY", "Lister", "WebhookServer", "api_lister"]

MAX_BODY = 3 * 1024 * 1024
_READ_TIMEOUT_S = 10.0
_RELOAD_EVERY_S = 10.0

Lister = Callable[[str], Awaitable[Sequence[resources.Resource]]]
"""The Meridio objects stored in a namespace."""


def api_lister(api: kubeapi.Client) -> Lister:
    async def existing(namespace: str) -> list[resources.Resource]:
        return (await crds.list_stored(api, namespace)).objects
    return existing


class _ReloadingContext:
    """An SSL context whose certificate is loaded again when its files change."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp: tuple[float, float] | None = None
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; a half-written pair mid-rotation raises (and the
        certificate loaded before stays)."""
        stamp = (os.stat(self.cert_file).st_mtime_ns, os.stat(self.key_file).st_mtime_ns)
        if stamp == self._stamp:
            return False
        self.context.load_cert_chain(self.cert_file, self.key_file)
        self._stamp = stamp
        return True


class WebhookServer:
    def __init__(self, lister: Lister, *, cert_file: str, key_file: str, host: str = "0.0.0.0",
                 port: int = 9443, log: logmod.Logger = logmod.null) -> None:
        self._lister, self._log = lister, log
        self._tls = _ReloadingContext(cert_file, key_file)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self._reloading: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        from aiohttp import web  # here: only the operator pays for importing it

        app = web.Application(client_max_size=MAX_BODY)
        for kind in resources.MERIDIO_KINDS:
            app.router.add_post(admission.path_for(kind), self._handle)
        app.router.add_get("/healthz", self._health)
        return app

    async def start(self) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._tls.context)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._reloading = asyncio.create_task(self._reload_loop())
        self._log.info("webhookServing", host=self.host, port=self.port)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(_RELOAD_EVERY_S)
            try:
                if self._tls.reload_if_changed():
                    self._log.info("webhookCertificateReloaded", cert=self._tls.cert_file)
            except (OSError, ssl.SSLError) as exc:
                self._log.warning("webhookCertificateReloadFailed", error=str(exc))

    async def stop(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            self._reloading = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        try:
            raw = await asyncio.wait_for(request.read(), _READ_TIMEOUT_S)
            body: Any = json.loads(raw)
        except (TimeoutError, ValueError, web.HTTPRequestEntityTooLarge) as exc:
            return web.json_response(admission.refusal("", 400, "BadRequest",
                                                       f"malformed admission review: {type(exc).__name__}"))
        try:
            req = admission.parse_request(body)
        except ValueError as exc:
            return web.json_response(admission.refusal(admission.uid_of(body), 400, "BadRequest",
                                                       f"malformed admission review: {exc}"))
        try:
            existing = await self._lister(req.namespace) if req.namespace else []
        except kubeapi.ApiError as exc:
            self._log.warning("webhookListFailed", namespace=req.namespace, error=str(exc))
            return web.json_response(admission.refusal(req.uid, 503, "ServiceUnavailable",
                                                       f"cannot read the namespace's objects: {exc}"))
        answer = admission.judge(req, existing)
        response = answer["response"]
        self._log.info("admission", kind=request.path.rsplit("-", 1)[-1], namespace=req.namespace,
                       allowed=response["allowed"], why=response.get("status", {}).get("message", "")[:200])
        return web.json_response(answer)
