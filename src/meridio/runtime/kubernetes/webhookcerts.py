"""The operator manages its admission webhook's TLS: a CA and a serving certificate kept in the Secret
``meridio-webhook-tls``, the files the webhook serves from, and the ValidatingWebhookConfiguration with
that CA as its ``caBundle``.

On start and then every hour: a Secret that is missing, unreadable, of another CA, for other names or
past its half-life gets a new certificate (the CA is kept while it is readable, so the caBundle stays
valid across a rotation); the files are rewritten atomically (the webhook re-reads them); the webhook
configuration is created, or replaced when it differs. Concurrent writers are detected with the
objects' resourceVersion (a 409 means: try again next round). With ``MERIDIO_WEBHOOK_CERTS=external``
none of this runs: cert-manager or a Secret of the user's provides the files and the caBundle.
"""
from __future__ import annotations

import base64
import ipaddress
import pathlib
import urllib.parse
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meridio.api import kubeapi
from meridio.common import tls as tlsmod
from meridio.runtime.kubernetes import manifests
from meridio.runtime.local import pki

__all__ = ["LIFETIME_S", "ensure", "server_names"]

LIFETIME_S = 365 * 86400.0


def server_names(namespace: str, url: str = "") -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the serving certificate must carry."""
    dns = [f"{manifests.WEBHOOK_SERVICE}.{namespace}.svc", f"{manifests.WEBHOOK_SERVICE}.{namespace}.svc.cluster.local"]
    ips: list[str] = []
    host = urllib.parse.urlsplit(url).hostname if url else None
    if host:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    return dns, ips


def _names_of(cert_pem: bytes) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName)), sorted(str(a) for a in san.get_values_for_type(x509.IPAddress))


def _decode(secret: dict[str, Any] | None) -> dict[str, bytes]:
    data = (secret or {}).get("data") or {}
    try:
        return {k: base64.b64decode(v) for k, v in data.items()}
    except (ValueError, TypeError):
        return {}


def _usable(files: dict[str, bytes], names: tuple[list[str], list[str]], now: float) -> pki.Ca | None:
    """The Secret's CA if its serving certificate is current for ``names``; None otherwise."""
    try:
        ca = pki.Ca.from_pem(files["ca.key"], files["ca.crt"])
        cert = x509.load_pem_x509_certificate(files["tls.crt"])
        if cert.issuer != ca.cert.subject or pki.needs_renewal(files["tls.crt"], now):
            return None
        if _names_of(files["tls.crt"]) != (sorted(names[0]), sorted(names[1])):
            return None
        if serialization.load_pem_private_key(files["tls.key"], password=None).public_key() != cert.public_key():
            return None
    except (KeyError, ValueError, TypeError, tlsmod.TlsError, x509.ExtensionNotFound):
        return None
    return ca


async def ensure(api: kubeapi.Client, namespace: str, cert_dir: pathlib.Path, *, now: float, url: str = "") -> bool:
    """Make the Secret, the files and the webhook configuration current; True if a certificate was issued."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{manifests.WEBHOOK_SECRET}"
    try:
        secret = await api.get(path)
    except kubeapi.ApiError as exc:
        if exc.status != 404:
            raise
        secret = None
    files = _decode(secret)
    names = server_names(namespace, url)
    issued = False
    if _usable(files, names, now) is None:
        try:
            ca = pki.Ca.from_pem(files["ca.key"], files["ca.crt"])
        except (KeyError, tlsmod.TlsError):
            ca = pki.Ca.create(f"{namespace} webhook", now=now)
        cert, key = ca.issue_server(*names, now=now, lifetime_s=LIFETIME_S)
        files = {"ca.crt": ca.cert_pem, "ca.key": ca.key_pem, "tls.crt": cert, "tls.key": key}
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": manifests.WEBHOOK_SECRET, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "meridio-operator"}},
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}
        if secret is None:
            await api.create(f"/api/v1/namespaces/{namespace}/secrets", body)
        else:
            body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
            await api.replace(path, body)
        issued = True
    pki.write_files(cert_dir, cert=files["tls.crt"], key=files["tls.key"], ca=files["ca.crt"])
    await _ensure_configuration(api, namespace, files["ca.crt"], url)
    return issued


async def _ensure_configuration(api: kubeapi.Client, namespace: str, ca_pem: bytes, url: str) -> None:
    want = manifests.webhook_configuration(namespace, ca_pem, url=url)
    base = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    try:
        current = await api.get(f"{base}/{want['metadata']['name']}")
    except kubeapi.ApiError as exc:
        if exc.status != 404:
            raise
        await api.create(base, want)
        return
    if _comparable(current.get("webhooks", [])) != _comparable(want["webhooks"]):
        want["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await api.replace(f"{base}/{want['metadata']['name']}", want)


def _comparable(hooks: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """What of a webhook the operator decides (the API server adds defaults to the rest)."""
    out = []
    for h in hooks:
        client = h.get("clientConfig", {})
        target = client.get("url") or repr(sorted((client.get("service") or {}).items()))
        out.append((h.get("name", ""), target, client.get("caBundle", "")))
    return sorted(out)
