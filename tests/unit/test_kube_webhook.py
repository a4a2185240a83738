"""The webhook server's edges, over real HTTPS on loopback: a rotated certificate is served after a reload
(and a half-written pair keeps the old one), a body over 3 MiB or not JSON is refused as malformed with
the request left unjudged, and a lister that fails gives 503. (The kube tier has the API server call it.)"""
from __future__ import annotations

import asyncio
import json
import pathlib
import ssl
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meridio.api import kubeapi, resources
from meridio.runtime.kubernetes import admission, webhook
from meridio.runtime.local import pki


def issue(ca: pki.Ca, directory: pathlib.Path) -> bytes:
    cert, key = ca.issue_server(["localhost"], ["127.0.0.1"], now=time.time(), lifetime_s=3600)
    (directory / "tls.key").write_bytes(key)
    (directory / "tls.crt").write_bytes(cert)
    return cert


async def served_cert(port: int, ca: pki.Ca) -> bytes:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


async def post(port: int, ca: pki.Ca, path: str, body: bytes) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return json.loads(payload)  # type: ignore[no-any-return]


async def start(tmp_path: pathlib.Path, lister: webhook.Lister) -> tuple[webhook.WebhookServer, pki.Ca]:
    ca = pki.Ca.create("test", now=time.time())
    issue(ca, tmp_path)
    server = webhook.WebhookServer(lister, cert_file=str(tmp_path / "tls.crt"), key_file=str(tmp_path / "tls.key"),
                                   host="127.0.0.1", port=0)
    await server.start()
    return server, ca


async def nothing(_ns: str) -> list[resources.Resource]:
    return []


async def test_a_rotated_certificate_is_served_after_the_reload_and_a_half_written_pair_is_not(
        tmp_path: pathlib.Path) -> None:
    server, ca = await start(tmp_path, nothing)
    try:
        first = (tmp_path / "tls.crt").read_bytes()
        assert await served_cert(server.port, ca) == first
        (tmp_path / "tls.key").write_bytes(b"half written")
        with pytest.raises(ssl.SSLError):
            server._tls.reload_if_changed()
        assert await served_cert(server.port, ca) == first  # the loaded pair stays
        second = issue(ca, tmp_path)
        assert server._tls.reload_if_changed() is True
        assert await served_cert(server.port, ca) == second != first
        assert server._tls.reload_if_changed() is False  # unchanged files: nothing loaded again
    finally:
        await server.stop()


async def test_a_body_over_3_mib_or_not_json_is_refused_as_malformed_without_judging(tmp_path: pathlib.Path) -> None:
    listed: list[str] = []

    async def lister(ns: str) -> list[resources.Resource]:
        listed.append(ns)
        return []
    server, ca = await start(tmp_path, lister)
    try:
        path = admission.path_for("Trench")
        big = await post(server.port, ca, path, b"{" + b" " * (webhook.MAX_BODY + 1) + b"}")
        assert big["response"] == {"uid": "", "allowed": False, "status": {
            "status": "Failure", "code": 400, "reason": "BadRequest",
            "message": "malformed admission review: HTTPRequestEntityTooLarge"}}
        bad = await post(server.port, ca, path, b"not json")
        assert bad["response"]["status"]["code"] == 400
        assert listed == []
    finally:
        await server.stop()


async def test_a_failing_lister_refuses_with_503_and_the_requests_uid(tmp_path: pathlib.Path) -> None:
    async def lister(ns: str) -> list[resources.Resource]:
        raise kubeapi.ApiError(500, "etcd away")
    server, ca = await start(tmp_path, lister)
    try:
        body = {"apiVersion": admission.ADMISSION_VERSION, "kind": "AdmissionReview", "request": {
            "uid": "u-7", "operation": "CREATE", "namespace": "red",
            "object": {"apiVersion": resources.API_VERSION, "kind": "Trench", "metadata": {"name": "t"}}}}
        got = await post(server.port, ca, admission.path_for("Trench"), json.dumps(body).encode())
        assert got["response"]["uid"] == "u-7" and got["response"]["allowed"] is False
        assert got["response"]["status"]["code"] == 503
    finally:
        await server.stop()
