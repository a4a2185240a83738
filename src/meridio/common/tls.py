"""Mutual TLS material for every component-to-component gRPC connection, read from a directory.

The directory has cert-manager's Secret layout, so Kubernetes can mount a cert-manager (or
operator-managed) Secret unchanged and the local runtime writes the same files:

- ``tls.crt``: this component's certificate (PEM; intermediates may follow), with one ``spiffe://`` URI
  SAN (:mod:`meridio.common.identity`) and, for a server, the DNS SAN ``<component>.meridio.local``;
- ``tls.key``: its private key (PEM);
- ``ca.crt``: the CA(s) that sign every peer's certificate.

Files may be replaced at any time (a Secret update swaps them atomically through a symlink; the local
runtime writes new files and renames them into place). :meth:`Tls.load` checks that the certificate
and the key belong together, so a reader that raced a half-done replacement sees :class:`TlsError`
and keeps what it had. Servers pick up new files on the next handshake without a restart
(:meth:`Tls.server_credentials`); clients read the current files for every channel they create.

Settings (every component, same variables): ``MERIDIO_TLS_DIR`` (the directory) and
``MERIDIO_TLS_INSECURE`` (plain gRPC, for compatibility tests only). :func:`from_settings` refuses to
start without one of them: a component never falls back to plain connections on its own.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meridio.common import log as logmod

__all__ = ["CERT_FILE", "KEY_FILE", "CA_FILE", "DIR_ENV", "INSECURE_ENV", "DIR_HELP", "INSECURE_HELP",
           "TlsError", "Material", "Tls",
           "from_settings"]

CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
DIR_ENV, INSECURE_ENV = "MERIDIO_TLS_DIR", "MERIDIO_TLS_INSECURE"
DIR_HELP = "directory with tls.crt, tls.key, ca.crt (cert-manager Secret layout): mutual TLS with other components"
INSECURE_HELP = "plain gRPC between components, for compatibility tests only (default: TLS required)"
Generation = tuple[tuple[int, int, int], ...]


class TlsError(OSError):
    """The TLS files are missing, unreadable or do not belong together (the message names the file)."""


@dataclasses.dataclass(frozen=True)
class Material:
    cert: bytes
    key: bytes
    ca: bytes
    not_after: float
    """Expiry of ``cert``, in seconds since the epoch."""


def _same_key(cert: x509.Certificate, key_pem: bytes, where: pathlib.Path) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{where / KEY_FILE}: not a PEM private key: {exc}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise TlsError(f"{where / KEY_FILE}: does not belong to {where / CERT_FILE} (being replaced?)")


@dataclasses.dataclass(frozen=True)
class Tls:
    """The TLS directory of one process; cheap to copy, reads the files when asked."""

    directory: pathlib.Path

    def _path(self, name: str) -> pathlib.Path:
        return self.directory / name

    def generation(self) -> Generation:
        """Changes whenever one of the three files is replaced (inode, size, mtime of each)."""
        out = []
        for name in (CERT_FILE, KEY_FILE, CA_FILE):
            try:
                st = os.stat(self._path(name))
            except OSError:
                out.append((0, 0, 0))
                continue
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def load(self) -> Material:
        """The three files, checked; :class:`TlsError` naming the file otherwise."""
        data = {}
        for name in (CERT_FILE, KEY_FILE, CA_FILE):
            try:
                data[name] = self._path(name).read_bytes()
            except OSError as exc:
                raise TlsError(f"{self._path(name)}: {exc.strerror or exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(data[CERT_FILE])
        except ValueError as exc:
            raise TlsError(f"{self._path(CERT_FILE)}: not a PEM certificate: {exc}") from None
        try:
            x509.load_pem_x509_certificates(data[CA_FILE])
        except ValueError as exc:
            raise TlsError(f"{self._path(CA_FILE)}: not a PEM certificate: {exc}") from None
        _same_key(cert, data[KEY_FILE], self.directory)
        return Material(cert=data[CERT_FILE], key=data[KEY_FILE], ca=data[CA_FILE],
                        not_after=cert.not_valid_after_utc.timestamp())

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials from the current files (our certificate, and the CA that signs servers)."""
        m = self.load()
        return grpc.ssl_channel_credentials(root_certificates=m.ca, private_key=m.key, certificate_chain=m.cert)

    def server_credentials(self, *, log: logmod.Logger = logmod.null) -> grpc.ServerCredentials:
        """Server credentials that require a client certificate signed by ``ca.crt`` and follow the files.

        gRPC asks :class:`_Fetcher` before every new handshake; it answers a new configuration only when
        the files changed and load cleanly, so connections already open go on untouched.
        """
        fetcher = _Fetcher(self, log)
        return grpc.dynamic_ssl_server_credentials(fetcher.initial(), fetcher, require_client_authentication=True)


def _server_config(m: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(m.key, m.cert)], root_certificates=m.ca)


class _Fetcher:
    """Called by gRPC (from its own threads) before each handshake: a new configuration or ``None``."""

    def __init__(self, tls: Tls, log: logmod.Logger) -> None:
        self._tls, self._log = tls, log
        self._lock = threading.Lock()
        self._generation = tls.generation()
        self._material = tls.load()

    def initial(self) -> grpc.ServerCertificateConfiguration:
        return _server_config(self._material)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            generation = self._tls.generation()
            if generation == self._generation:
                return None
            try:
                material = self._tls.load()
            except TlsError as exc:
                self._log.warning("tlsReloadFailed", error=str(exc))
                return None  # keep the current certificate; the next handshake looks again
            self._generation, self._material = generation, material
            self._log.info("tlsReloaded", notAfter=int(material.not_after))
            return _server_config(material)


def from_settings(tls_dir: str, insecure: bool, *, flag: str = "--tls-dir") -> Tls | None:
    """The process's TLS from its two settings: ``None`` (plain) only when ``insecure`` says so.

    Raises :class:`TlsError` when neither is set, or when the directory's files cannot be used.
    """
    if insecure:
        return None
    if not tls_dir:
        raise TlsError(f"{flag} / {DIR_ENV}: not set: mutual TLS needs a directory with {CERT_FILE}, {KEY_FILE} "
                       f"and {CA_FILE} ({INSECURE_ENV}=true turns TLS off, for compatibility tests only)")
    tls = Tls(pathlib.Path(tls_dir))
    tls.load()
    return tls

