"""The local runtime's CA (:mod:`meridio.runtime.local.pki`): the CA certificate, what a component
certificate carries, files and their modes, and when :meth:`~meridio.runtime.local.pki.Ca.ensure` issues.

Real: ECDSA keys and certificates (``cryptography``), files in ``tmp_path``. Time is the ``now`` argument
(a fixed instant); nothing sleeps, nothing touches the network.
"""
from __future__ import annotations

import datetime
import os
import pathlib
import stat
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from meridio.runtime.local import pki
from tests.unit.tls_samples import HOUR, NOW, NSP_A, PROXY_A1, TAPA_1, C, ident

BACKDATE = 60.0


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def ca() -> pki.Ca:
    return pki.Ca.create("e2e", now=NOW)


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> pki.CertSpec:
    return pki.CertSpec(tmp_path / "pod" / "tls" / "nsp", NSP_A)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ------------------------------------------------------------------ the CA

def test_ca_is_self_signed_for_its_cluster(ca: pki.Ca) -> None:
    assert ca.cert.issuer == ca.cert.subject
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "meridio e2e CA"
    assert ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "meridio"
    ca.cert.verify_directly_issued_by(ca.cert)


def test_ca_may_sign_leaf_certificates_only(ca: pki.Ca) -> None:
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment


def test_ca_is_valid_ten_years_from_a_minute_ago(ca: pki.Ca) -> None:
    assert ca.cert.not_valid_before_utc == _utc(NOW - BACKDATE)
    assert ca.cert.not_valid_after_utc == _utc(NOW + pki.CA_LIFETIME_S)
    assert pki.CA_LIFETIME_S == 10 * 365 * 86400


def test_ca_key_is_ecdsa_p256(ca: pki.Ca) -> None:
    key = ca.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_ca_cert_pem_is_its_certificate(ca: pki.Ca) -> None:
    assert x509.load_pem_x509_certificate(ca.cert_pem) == ca.cert


def test_load_or_create_makes_the_ca_with_private_files(tmp_path: pathlib.Path) -> None:
    where = tmp_path / "state" / "pki"
    made = pki.Ca.load_or_create(where, "e2e", now=NOW)
    assert (where / "ca.crt").read_bytes() == made.cert_pem
    assert _mode(where / "ca.key") == 0o600
    assert _mode(where) == 0o700
    assert sorted(p.name for p in where.iterdir()) == ["ca.crt", "ca.key"]  # no temporary file left


def test_load_or_create_tightens_an_existing_directory(tmp_path: pathlib.Path) -> None:
    where = tmp_path / "pki"
    where.mkdir(mode=0o755)
    os.chmod(where, 0o755)
    pki.Ca.load_or_create(where, "e2e", now=NOW)
    assert _mode(where) == 0o700


def test_load_or_create_gives_the_same_ca_the_second_time(tmp_path: pathlib.Path) -> None:
    first = pki.Ca.load_or_create(tmp_path, "e2e", now=NOW)
    again = pki.Ca.load_or_create(tmp_path, "e2e", now=NOW + 86400)
    assert again.cert_pem == first.cert_pem
    cert, _ = again.issue(NSP_A, now=NOW)
    x509.load_pem_x509_certificate(cert).verify_directly_issued_by(first.cert)  # the same key signs


def test_load_or_create_refuses_a_key_that_is_not_ec(tmp_path: pathlib.Path) -> None:
    pki.Ca.load_or_create(tmp_path, "e2e", now=NOW)
    other = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "ca.key").write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    with pytest.raises(tlsmod.TlsError, match=f"^{tmp_path / 'ca.key'}: not an EC private key$"):
        pki.Ca.load_or_create(tmp_path, "e2e", now=NOW)


def test_two_cas_have_different_keys() -> None:
    a, b = pki.Ca.create("e2e", now=NOW), pki.Ca.create("e2e", now=NOW)
    assert a.cert_pem != b.cert_pem
    assert a.cert.public_key() != b.cert.public_key()


# ------------------------------------------------------------------ a component certificate

def _issued(ca: pki.Ca, who: idm.Identity = PROXY_A1, lifetime_s: float = HOUR) -> tuple[x509.Certificate, bytes]:
    cert, key = ca.issue(who, now=NOW, lifetime_s=lifetime_s)
    return x509.load_pem_x509_certificate(cert), key


def test_issued_certificate_is_signed_by_the_ca(ca: pki.Ca) -> None:
    cert, _ = _issued(ca)
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)


def test_issued_certificate_names_the_identity_in_its_one_uri_san(ca: pki.Ca) -> None:
    cert, _ = _issued(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [PROXY_A1.uri]


@pytest.mark.parametrize("component", list(C), ids=[c.value for c in C])
def test_issued_certificate_carries_the_server_name_of_its_component(ca: pki.Ca, component: idm.Component) -> None:
    cert, _ = _issued(ca, ident(component, "pod-0"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"{component.value}.meridio.local"]


def test_issued_certificate_reads_back_as_its_identity(ca: pki.Ca) -> None:
    for who in (NSP_A, PROXY_A1, TAPA_1):
        cert, _ = ca.issue(who, now=NOW)
        assert idm.from_certificate_pem(cert) == who


@pytest.mark.parametrize("lifetime_s", [10.0, HOUR, 86400.0], ids=["10s", "1h", "1d"])
def test_issued_certificate_is_valid_from_a_minute_ago_for_its_lifetime(ca: pki.Ca, lifetime_s: float) -> None:
    cert, _ = _issued(ca, lifetime_s=lifetime_s)
    assert cert.not_valid_before_utc == _utc(NOW - BACKDATE)
    assert cert.not_valid_after_utc == _utc(NOW + lifetime_s)


def test_issued_certificate_lifetime_defaults_to_an_hour(ca: pki.Ca) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue(NSP_A, now=NOW)[0])
    assert cert.not_valid_after_utc == _utc(NOW + pki.DEFAULT_LIFETIME_S) == _utc(NOW + HOUR)


def test_issued_certificate_serves_and_connects_but_signs_nothing(ca: pki.Ca) -> None:
    cert, _ = _issued(ca)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_issued_certificate_names_the_ca_key_and_the_pod(ca: pki.Ca) -> None:
    cert, _ = _issued(ca)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == PROXY_A1.pod


def test_issued_key_belongs_to_the_certificate(ca: pki.Ca) -> None:
    cert, key_pem = _issued(ca)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_each_issue_has_a_new_key_and_a_positive_serial(ca: pki.Ca) -> None:
    (c1, k1), (c2, k2) = _issued(ca), _issued(ca)
    assert k1 != k2 and c1.serial_number != c2.serial_number
    assert all(0 < c.serial_number < 2 ** 159 for c in (c1, c2))  # RFC 5280 4.1.2.2: positive, at most 20 octets


# ------------------------------------------------------------------ renewal timing

@pytest.fixture(scope="module")
def hour_cert(ca: pki.Ca) -> bytes:
    return ca.issue(NSP_A, now=NOW, lifetime_s=HOUR)[0]


# validity [NOW - 60, NOW + 3600], issued at NOW (notBefore is backdated a minute for clock skew):
# the half-life counts from the issue, NOW + 1800
@pytest.mark.parametrize(("offset", "expected"), [
    (-120.0, False), (0.0, False), (1799.0, False), (1800.0, True), (1801.0, True), (HOUR, True), (2 * HOUR, True),
], ids=["before-validity", "at-issue", "just-before-half-life", "at-half-life", "after-half-life", "at-expiry",
        "long-expired"])
def test_needs_renewal_from_the_half_life_of_the_validity_on(hour_cert: bytes, offset: float, expected: bool) -> None:
    assert pki.needs_renewal(hour_cert, NOW + offset) is expected


@pytest.mark.parametrize("pem", [b"", b"garbage"], ids=["empty", "garbage"])
def test_needs_renewal_for_a_certificate_that_cannot_be_read(pem: bytes) -> None:
    assert pki.needs_renewal(pem, NOW) is True


@pytest.mark.parametrize(("lifetime_s", "interval"), [
    (HOUR, 30.0), (240.0, 30.0), (239.2, 29.9), (80.0, 10.0), (10.0, 1.25), (8.0, 1.0), (4.0, 1.0),
], ids=["1h-capped", "4m-at-cap", "just-under-cap", "80s", "10s", "8s-at-floor", "4s-floored"])
def test_check_interval_is_an_eighth_of_the_lifetime_between_1_and_30_seconds(lifetime_s: float,
                                                                               interval: float) -> None:
    assert pki.check_interval(lifetime_s) == pytest.approx(interval)


# ------------------------------------------------------------------ files

def test_write_files_puts_the_three_files_with_their_modes(tmp_path: pathlib.Path, umask_zero: None) -> None:
    where = tmp_path / "a" / "tls"
    pki.write_files(where, cert=b"C", key=b"K", ca=b"A")
    assert (where / "tls.crt").read_bytes() == b"C"
    assert (where / "tls.key").read_bytes() == b"K"
    assert (where / "ca.crt").read_bytes() == b"A"
    assert _mode(where / "tls.key") == 0o600  # whatever the umask
    assert _mode(where / "tls.crt") == 0o644
    assert _mode(where / "ca.crt") == 0o644
    assert _mode(where) == 0o700


def test_write_files_replaces_files_and_leaves_no_temporary(tmp_path: pathlib.Path) -> None:
    pki.write_files(tmp_path, cert=b"C1", key=b"K1", ca=b"A1")
    inode = os.stat(tmp_path / "tls.key").st_ino
    pki.write_files(tmp_path, cert=b"C2", key=b"K2", ca=b"A2")
    assert [(tmp_path / n).read_bytes() for n in ("tls.crt", "tls.key", "ca.crt")] == [b"C2", b"K2", b"A2"]
    assert os.stat(tmp_path / "tls.key").st_ino != inode  # renamed into place, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_write_files_tightens_a_stale_temporary_key_file(tmp_path: pathlib.Path) -> None:
    stale = tmp_path / ".tls.key.tmp"
    stale.write_bytes(b"old")
    os.chmod(stale, 0o666)
    pki.write_files(tmp_path, cert=b"C", key=b"K", ca=b"A")
    assert _mode(tmp_path / "tls.key") == 0o600 and (tmp_path / "tls.key").read_bytes() == b"K"


def test_write_files_puts_the_key_in_place_before_the_certificate(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real = os.replace

    def recording(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        order.append(pathlib.Path(dst).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", recording)  # the module pki writes through
    pki.write_files(tmp_path, cert=b"C", key=b"K", ca=b"A")
    assert order.index("tls.key") < order.index("tls.crt")
    assert sorted(order) == ["ca.crt", "tls.crt", "tls.key"]


# ------------------------------------------------------------------ ensure

def test_ensure_issues_into_an_empty_directory(ca: pki.Ca, spec: pki.CertSpec) -> None:
    assert ca.ensure(spec, now=NOW) is True
    m = tlsmod.Tls(spec.directory).load()
    assert idm.from_certificate_pem(m.cert) == NSP_A
    assert m.ca == ca.cert_pem and m.not_after == NOW + HOUR
    assert _mode(spec.directory / "tls.key") == 0o600


def test_ensure_passes_the_lifetime_on(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW, lifetime_s=600)
    assert tlsmod.Tls(spec.directory).load().not_after == NOW + 600


def test_ensure_keeps_a_current_certificate(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    before = tlsmod.Tls(spec.directory).load()
    assert ca.ensure(spec, now=NOW + 600) is False
    assert tlsmod.Tls(spec.directory).load() == before


def test_ensure_keeps_it_until_just_before_the_half_life(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    assert ca.ensure(spec, now=NOW + 1799) is False


def test_ensure_renews_from_the_half_life_on(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    assert ca.ensure(spec, now=NOW + 1800) is True
    assert tlsmod.Tls(spec.directory).load().not_after == NOW + 1800 + HOUR


def test_ensure_with_force_issues_even_for_a_current_certificate(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    before = tlsmod.Tls(spec.directory).load()
    assert ca.ensure(spec, now=NOW + 1, force=True) is True
    after = tlsmod.Tls(spec.directory).load()
    assert after.cert != before.cert and after.key != before.key
    assert idm.from_certificate_pem(after.cert) == NSP_A


def test_ensure_issues_when_the_certificate_names_another_identity(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    moved = pki.CertSpec(spec.directory, ident(C.NSP, "nsp-trench-a", trench="trench-b"))
    assert ca.ensure(moved, now=NOW) is True
    assert idm.from_certificate_pem(tlsmod.Tls(spec.directory).load().cert) == moved.identity


def test_ensure_issues_when_the_files_are_another_cas(ca: pki.Ca, spec: pki.CertSpec) -> None:
    pki.Ca.create("e2e", now=NOW).ensure(spec, now=NOW)  # a previous environment's CA, same name
    assert ca.ensure(spec, now=NOW) is True
    m = tlsmod.Tls(spec.directory).load()
    assert m.ca == ca.cert_pem
    x509.load_pem_x509_certificate(m.cert).verify_directly_issued_by(ca.cert)


def test_ensure_issues_when_only_ca_crt_is_another_cas(ca: pki.Ca, spec: pki.CertSpec) -> None:
    ca.ensure(spec, now=NOW)
    (spec.directory / "ca.crt").write_bytes(pki.Ca.create("other", now=NOW).cert_pem)
    assert ca.ensure(spec, now=NOW) is True
    assert (spec.directory / "ca.crt").read_bytes() == ca.cert_pem


def test_ensure_issues_when_the_certificate_is_another_issuers(ca: pki.Ca, spec: pki.CertSpec) -> None:
    other = pki.Ca.create("other", now=NOW)
    cert, key = other.issue(NSP_A, now=NOW)
    pki.write_files(spec.directory, cert=cert, key=key, ca=ca.cert_pem)  # our ca.crt, their certificate
    assert ca.ensure(spec, now=NOW) is True
    x509.load_pem_x509_certificate((spec.directory / "tls.crt").read_bytes()).verify_directly_issued_by(ca.cert)


@pytest.mark.parametrize("damage", ["garbage-cert", "missing-key", "foreign-key", "garbage-ca"])
def test_ensure_issues_when_the_files_do_not_load(ca: pki.Ca, spec: pki.CertSpec, damage: str) -> None:
    ca.ensure(spec, now=NOW)
    d = spec.directory
    if damage == "garbage-cert":
        (d / "tls.crt").write_bytes(b"garbage")
    elif damage == "missing-key":
        (d / "tls.key").unlink()
    elif damage == "foreign-key":
        (d / "tls.key").write_bytes(ca.issue(NSP_A, now=NOW)[1])
    else:
        (d / "ca.crt").write_bytes(b"")
    assert ca.ensure(spec, now=NOW) is True
    assert idm.from_certificate_pem(tlsmod.Tls(d).load().cert) == NSP_A


def _ca_key_pem(ca: pki.Ca) -> bytes:
    return ca._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def test_ensure_issues_when_the_certificate_names_no_identity(ca: pki.Ca, spec: pki.CertSpec) -> None:
    """A certificate of our CA without a URI SAN (not one ``issue`` makes, but one a directory may hold)."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = serialization.load_pem_private_key(_ca_key_pem(ca), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(1)
            .not_valid_before(_utc(NOW - 60)).not_valid_after(_utc(NOW + HOUR))
            .sign(signer, hashes.SHA256()))
    pki.write_files(spec.directory, cert=cert.public_bytes(serialization.Encoding.PEM),
                    key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), ca=ca.cert_pem)
    assert ca.ensure(spec, now=NOW) is True
    assert idm.from_certificate_pem(tlsmod.Tls(spec.directory).load().cert) == NSP_A


@pytest.mark.parametrize("lifetime_s", [10.0, 30.0, 60.0], ids=["10s", "30s", "60s"])
def test_ensure_keeps_a_short_lived_certificate_it_just_issued(ca: pki.Ca, spec: pki.CertSpec,
                                                               lifetime_s: float) -> None:
    assert ca.ensure(spec, now=NOW, lifetime_s=lifetime_s) is True
    assert ca.ensure(spec, now=NOW, lifetime_s=lifetime_s) is False
