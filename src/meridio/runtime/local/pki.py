"""The local runtime's small CA: one per environment, short-lived certificates for every component.

- The CA (``<state>/pki/ca.key`` mode 0600, ``ca.crt``; ECDSA P-256, valid ten years) is made on the
  first ``meridio up`` and kept until ``meridio down`` removes the state directory.
- :meth:`Ca.ensure` gives a component's TLS directory (cert-manager's layout: ``tls.crt``, ``tls.key``
  0600, ``ca.crt``; :mod:`meridio.common.tls`) a certificate for its :class:`~meridio.common.identity.Identity`
  (one URI SAN) and the DNS SAN ``<component>.meridio.local`` (what clients check as the server name),
  usable as server and client. It issues a new one when the directory has none, when the one there is
  for another identity or CA, and from its half-life on (:func:`needs_renewal`). Files are written to a
  temporary name and renamed into place; a reader that sees the new certificate with the old key
  notices (:meth:`meridio.common.tls.Tls.load`) and reads again.
- The controller calls :meth:`Ca.ensure` for every certificate of a pod before it starts the pod, and
  again every :func:`check_interval` while the environment runs (rotation).

Time is passed in (``now``, seconds since the epoch), so issuing and renewal are exact in unit tests.
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meridio.common import identity as identitymod
from meridio.common import tls as tlsmod

__all__ = ["DEFAULT_LIFETIME_S", "CA_LIFETIME_S", "Ca", "CertSpec", "needs_renewal", "check_interval", "write_files"]

DEFAULT_LIFETIME_S = 3600.0
"""Lifetime of a component certificate (``MERIDIO_TLS_CERT_LIFETIME`` of the runtime daemon)."""
CA_LIFETIME_S = 10 * 365 * 86400.0
_BACKDATE_S = 60.0  # tolerate small clock differences between the runtime and the components


@dataclasses.dataclass(frozen=True)
class CertSpec:
    """One component's certificate: where it goes and whom it names."""

    directory: pathlib.Path
    identity: identitymod.Identity


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def needs_renewal(cert_pem: bytes, now: float) -> bool:
    """True from the certificate's half-life on (and for one that cannot be read).

    The half-life counts from the moment of issue, not from ``notBefore``: :meth:`Ca.issue` backdates
    ``notBefore`` by a minute for clock skew, which would otherwise make a certificate of a minute's
    lifetime or less due at once (and every check reissue it)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    end = cert.not_valid_after_utc.timestamp()
    issued = min(cert.not_valid_before_utc.timestamp() + _BACKDATE_S, end)
    return now >= issued + (end - issued) / 2


def check_interval(lifetime_s: float) -> float:
    """How often the runtime looks for certificates to renew: an eighth of the lifetime, 1–30 s."""
    return max(1.0, min(30.0, lifetime_s / 8))


def _private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: pathlib.Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover of an interrupted write: never written through (nor a symlink)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # before any byte: the umask may have narrowed or the mode argument widened nothing
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_files(directory: pathlib.Path, *, cert: bytes, key: bytes, ca: bytes) -> None:
    """Put the three files in place, each atomically: the CA, then the key, then the certificate (a
    reader that sees the new certificate sees its key too; one that sees the new key with the old
    certificate finds the mismatch and reads again)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(directory / tlsmod.CA_FILE, ca, 0o644)
    _write(directory / tlsmod.KEY_FILE, key, 0o600)
    _write(directory / tlsmod.CERT_FILE, cert, 0o644)


class Ca:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key, self.cert = key, cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, cluster: str, *, now: float) -> Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meridio"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"meridio {cluster} CA")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(_utc(now - _BACKDATE_S)).not_valid_after(_utc(now + CA_LIFETIME_S))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> Ca:
        """A CA kept elsewhere (the operator keeps its webhook CA in a Secret); TlsError if unusable."""
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise tlsmod.TlsError(f"the CA is unreadable: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise tlsmod.TlsError("the CA's key is not an EC key of its certificate")
        return cls(key, cert)

    @property
    def key_pem(self) -> bytes:
        return _private_bytes(self._key)

    @classmethod
    def load_or_create(cls, directory: pathlib.Path, cluster: str, *, now: float) -> Ca:
        """The CA in ``directory`` (``ca.key`` 0600, ``ca.crt``), made there if it has none."""
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise tlsmod.TlsError(f"{key_path}: not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        ca = cls.create(cluster, now=now)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        _write(key_path, _private_bytes(ca._key), 0o600)
        _write(cert_path, ca.cert_pem, 0o644)
        return ca

    def issue(self, who: identitymod.Identity, *, now: float, lifetime_s: float = DEFAULT_LIFETIME_S
              ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for ``who``, valid from a minute ago for ``lifetime_s`` seconds."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meridio"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, who.pod)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
                .not_valid_before(_utc(now - _BACKDATE_S)).not_valid_after(_utc(now + lifetime_s))
                .add_extension(x509.SubjectAlternativeName([
                    x509.UniformResourceIdentifier(who.uri),
                    x509.DNSName(identitymod.server_name(who.component))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _private_bytes(key)

    def issue_server(self, dns_names: list[str], ip_addresses: list[str], *, now: float, lifetime_s: float
                     ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a plain TLS server (an admission webhook) for these names."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meridio"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, (dns_names or ip_addresses)[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
                .not_valid_before(_utc(now - _BACKDATE_S)).not_valid_after(_utc(now + lifetime_s))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _private_bytes(key)

    def _current(self, spec: CertSpec) -> bytes | None:
        """The certificate in the directory if it is this CA's, for this identity, with its key."""
        try:
            material = tlsmod.Tls(spec.directory).load()
        except tlsmod.TlsError:
            return None
        if material.ca != self.cert_pem:
            return None
        try:
            cert = x509.load_pem_x509_certificate(material.cert)
            if cert.issuer != self.cert.subject or identitymod.from_certificate_pem(material.cert) != spec.identity:
                return None
        except (ValueError, identitymod.IdentityError):
            return None
        return material.cert

    def ensure(self, spec: CertSpec, *, now: float, lifetime_s: float = DEFAULT_LIFETIME_S,
               force: bool = False) -> bool:
        """Give ``spec.directory`` a current certificate; True if one was issued (see the module docstring)."""
        current = None if force else self._current(spec)
        if current is not None and not needs_renewal(current, now):
            return False
        cert, key = self.issue(spec.identity, now=now, lifetime_s=lifetime_s)
        write_files(spec.directory, cert=cert, key=key, ca=self.cert_pem)
        return True
