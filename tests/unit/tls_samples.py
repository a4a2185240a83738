"""Shared samples for the mutual-TLS unit tests: identities, one fixed instant, TLS directories written
with :class:`meridio.runtime.local.pki.Ca`, and hand-built certificates (for the shapes ``Ca`` never
issues: no SAN, several URI SANs, an unusual SAN mix).

Nothing here touches the network; directories live under the test's ``tmp_path``.
"""
from __future__ import annotations

import datetime
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meridio.common import identity as idm
from meridio.runtime.local import pki

C = idm.Component
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z, a whole second: X.509 validity has one-second resolution
HOUR = 3600.0


def ident(component: idm.Component, pod: str, *, trench: str | None = "trench-a", node: str | None = None,
          cluster: str = "e2e") -> idm.Identity:
    return idm.Identity(cluster=cluster, component=component, pod=pod, trench=trench, node=node)


NSP_A = ident(C.NSP, "nsp-trench-a")
PROXY_A1 = ident(C.PROXY, "proxy-conduit-a-1-node-1", node="node-1")
TAPA_1 = ident(C.TAPA, "target-a-1", trench=None, node="node-1")


def write_tls(directory: pathlib.Path, ca: pki.Ca, who: idm.Identity, *, now: float = NOW,
              lifetime_s: float = HOUR) -> tuple[bytes, bytes]:
    """Issue a certificate for ``who`` and write the three files; returns (cert PEM, key PEM)."""
    cert, key = ca.issue(who, now=now, lifetime_s=lifetime_s)
    pki.write_files(directory, cert=cert, key=key, ca=ca.cert_pem)
    return cert, key


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def self_signed(sans: list[x509.GeneralName] | None, *, now: float = NOW) -> bytes:
    """A self-signed leaf PEM with exactly ``sans`` as its SAN extension (no extension at all for ``None``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hand-made")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(_utc(now - 60)).not_valid_after(_utc(now + HOUR)))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def uri(value: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(value)


def dns(value: str) -> x509.GeneralName:
    return x509.DNSName(value)
