"""A thin asynchronous client of the Kubernetes API (aiohttp, which kopf brings): what the operator, the
webhook and the NSP's ConfigMap source need, and nothing else.

Credentials come from the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST``/``_PORT`` and
``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}``, the token re-read when it
changes, as the kubelet rotates it) or from a kubeconfig file with a bearer token or a client
certificate. The server's certificate is always verified. Errors are :class:`ApiError` with the HTTP
status and the API server's message; a watch yields ``(type, object)`` events and ends on a 410 Gone
(the caller lists again).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ApiError", "Client", "Credentials", "from_kubeconfig", "in_cluster"]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_MAX_BODY = 64 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, dict(body or {})


@dataclasses.dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    namespace: str = "default"

    def bearer(self) -> str | None:
        if self.token_file:
            with open(self.token_file, encoding="utf-8") as fh:
                return fh.read().strip()
        return self.token


def in_cluster(sa_dir: str = SA_DIR) -> Credentials:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ApiError(0, "not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    host = f"[{host}]" if ":" in host else host
    with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as fh:
        namespace = fh.read().strip()
    return Credentials(f"https://{host}:{port}", os.path.join(sa_dir, "ca.crt"),
                       token_file=os.path.join(sa_dir, "token"), namespace=namespace)


def _data_file(data: str, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(data))
    return path


def from_kubeconfig(path: str) -> Credentials:
    """The current context of a kubeconfig (token or client certificate; inline data written to a
    private temporary directory)."""
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    tmp = tempfile.mkdtemp(prefix="meridio-kubeconfig-")
    ca = cluster.get("certificate-authority") or (
        _data_file(cluster["certificate-authority-data"], tmp, "ca.crt") if "certificate-authority-data" in cluster
        else None)
    cert = user.get("client-certificate") or (
        _data_file(user["client-certificate-data"], tmp, "tls.crt") if "client-certificate-data" in user else None)
    key = user.get("client-key") or (
        _data_file(user["client-key-data"], tmp, "tls.key") if "client-key-data" in user else None)
    return Credentials(cluster["server"], ca, token=user.get("token"), token_file=user.get("tokenFile"),
                       cert_file=cert, key_file=key, namespace=ctx.get("namespace", "default"))


class Client:
    """``async with Client(creds) as api: await api.get('/api/v1/namespaces/x/configmaps/y')``."""

    def __init__(self, creds: Credentials, *, timeout: float = 30.0) -> None:
        self.creds = creds
        ctx = ssl.create_default_context(cafile=creds.ca_file)
        if creds.cert_file and creds.key_file:
            ctx.load_cert_chain(creds.cert_file, creds.key_file)
        self._ssl = ctx
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        import aiohttp  # here: only the operator and the webhook pay for importing it

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str = "application/json") -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.creds.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(self, method: str, path: str, body: Any = None, *, params: Mapping[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        assert self._session is not None, "use the client as an async context manager"
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        async with self._session.request(method, self.creds.server + path, data=data, params=params,
                                         headers=self._headers(content_type),
                                         timeout=self._aiohttp.ClientTimeout(total=self._timeout)) as resp:
            raw = await _read_bounded(resp.content)
            if resp.status >= 400:
                raise _error(resp.status, raw)
            return json.loads(raw) if raw else None

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self.request("POST", path, body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Any:
        return await self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    async def apply(self, path: str, body: Mapping[str, Any], manager: str, *, force: bool = True) -> Any:
        """Server-side apply of ``body`` as field manager ``manager``."""
        params = {"fieldManager": manager, "force": "true" if force else "false"}
        return await self.request("PATCH", path, body, params=params, content_type="application/apply-patch+yaml")

    async def delete(self, path: str, **params: str) -> Any:
        return await self.request("DELETE", path, params=params or None)

    async def watch(self, path: str, resource_version: str, *, timeout_s: int = 300,
                    params: Mapping[str, str] | None = None) -> AsyncIterator[tuple[str, Any]]:
        """Events after ``resource_version`` until the server ends the watch (``timeout_s``); a 410 (the
        version is too old) raises :class:`ApiError` with status 410."""
        assert self._session is not None, "use the client as an async context manager"
        query = {**(params or {}), "watch": "true", "resourceVersion": resource_version,
                 "timeoutSeconds": str(timeout_s), "allowWatchBookmarks": "true"}
        async with self._session.get(self.creds.server + path, params=query, headers=self._headers(),
                                     timeout=self._aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30)) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await _read_bounded(resp.content))
            pending = b""  # events are JSON lines, some longer than aiohttp's line limit (a big ConfigMap)
            async for chunk in resp.content.iter_any():
                pending += chunk
                if len(pending) > _MAX_BODY:
                    raise ApiError(0, f"a watch event is larger than {_MAX_BODY} bytes")
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(int(status.get("code", 500)), str(status.get("message", "watch error")),
                                       status)
                    yield str(event.get("type")), event.get("object")


async def _read_bounded(content: Any) -> bytes:
    """The whole body (a single read may return only part of it), at most ``_MAX_BODY`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > _MAX_BODY:
            raise ApiError(0, f"the API server's answer is larger than {_MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"message": raw[:512].decode(errors="replace")}
    return ApiError(status, str(body.get("message", ""))[:2048], body if isinstance(body, Mapping) else None)
