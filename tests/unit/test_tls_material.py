"""The TLS directory (:mod:`meridio.common.tls`): loading with errors that name the file, the key/cert
check, the generation that tells a replacement, credentials, the server's certificate fetcher and
:func:`~meridio.common.tls.from_settings`.

Real: certificates from :class:`meridio.runtime.local.pki.Ca` in ``tmp_path``, grpc credential objects
(no channel is connected, no server listens). The fetcher is called directly, as gRPC would before a
handshake.
"""
from __future__ import annotations

import logging
import os
import pathlib

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.runtime.local import pki
from tests.unit.tls_samples import HOUR, NOW, NSP_A, TAPA_1, write_tls

LOGGER = "meridio.test.tls"


@pytest.fixture(scope="module")
def ca() -> pki.Ca:
    return pki.Ca.create("e2e", now=NOW)


@pytest.fixture
def tls_dir(tmp_path: pathlib.Path, ca: pki.Ca) -> pathlib.Path:
    directory = tmp_path / "tls"
    write_tls(directory, ca, NSP_A)
    return directory


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logmod.Logger:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return logmod.Logger(logging.getLogger(LOGGER))


def _events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [(r.getMessage(), dict(getattr(r, "fields", {}))) for r in caplog.records if r.name == LOGGER]


def _error(directory: pathlib.Path) -> str:
    with pytest.raises(tlsmod.TlsError) as caught:
        tlsmod.Tls(directory).load()
    return str(caught.value)


# ------------------------------------------------------------------ load

def test_load_returns_the_three_files_and_the_expiry(tls_dir: pathlib.Path, ca: pki.Ca) -> None:
    m = tlsmod.Tls(tls_dir).load()
    assert m.cert == (tls_dir / "tls.crt").read_bytes()
    assert m.key == (tls_dir / "tls.key").read_bytes()
    assert m.ca == ca.cert_pem
    assert m.not_after == NOW + HOUR


def test_the_file_names_are_cert_managers() -> None:
    assert (tlsmod.CERT_FILE, tlsmod.KEY_FILE, tlsmod.CA_FILE) == ("tls.crt", "tls.key", "ca.crt")


def test_tls_error_is_an_os_error() -> None:
    assert issubclass(tlsmod.TlsError, OSError)


@pytest.mark.parametrize("name", ["tls.crt", "tls.key", "ca.crt"])
def test_load_names_a_missing_file(tls_dir: pathlib.Path, name: str) -> None:
    (tls_dir / name).unlink()
    message = _error(tls_dir)
    assert message.startswith(f"{tls_dir / name}:") and "No such file or directory" in message


def test_load_names_the_certificate_of_a_missing_directory(tmp_path: pathlib.Path) -> None:
    assert _error(tmp_path / "absent").startswith(f"{tmp_path / 'absent' / 'tls.crt'}:")


def test_load_names_an_unreadable_file(tls_dir: pathlib.Path) -> None:
    (tls_dir / "tls.key").unlink()
    (tls_dir / "tls.key").mkdir()  # reading a directory fails for root too
    assert _error(tls_dir).startswith(f"{tls_dir / 'tls.key'}: Is a directory")


@pytest.mark.parametrize("content", [b"", b"garbage\n"], ids=["empty", "garbage"])
def test_load_names_a_certificate_file_that_is_no_pem_certificate(tls_dir: pathlib.Path, content: bytes) -> None:
    (tls_dir / "tls.crt").write_bytes(content)
    assert _error(tls_dir).startswith(f"{tls_dir / 'tls.crt'}: not a PEM certificate")


@pytest.mark.parametrize("content", [b"", b"garbage\n"], ids=["empty", "garbage"])
def test_load_names_a_ca_file_that_is_no_pem_certificate(tls_dir: pathlib.Path, content: bytes) -> None:
    (tls_dir / "ca.crt").write_bytes(content)
    assert _error(tls_dir).startswith(f"{tls_dir / 'ca.crt'}: not a PEM certificate")


def test_load_names_a_key_file_that_is_no_pem_key(tls_dir: pathlib.Path) -> None:
    (tls_dir / "tls.key").write_bytes(b"garbage\n")
    assert _error(tls_dir).startswith(f"{tls_dir / 'tls.key'}: not a PEM private key")


def test_load_names_a_key_file_holding_the_public_key(tls_dir: pathlib.Path) -> None:
    key = serialization.load_pem_private_key((tls_dir / "tls.key").read_bytes(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tls_dir / "tls.key").write_bytes(public)
    assert _error(tls_dir).startswith(f"{tls_dir / 'tls.key'}: not a PEM private key")


def test_load_names_an_encrypted_key_file(tls_dir: pathlib.Path) -> None:
    key = serialization.load_pem_private_key((tls_dir / "tls.key").read_bytes(), password=None)
    (tls_dir / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.BestAvailableEncryption(b"secret")))
    assert _error(tls_dir).startswith(f"{tls_dir / 'tls.key'}: not a PEM private key")


def test_load_refuses_a_key_of_another_certificate_naming_both_files(tls_dir: pathlib.Path, ca: pki.Ca) -> None:
    _, other_key = ca.issue(NSP_A, now=NOW)  # the same identity, a new key: a half-done replacement
    (tls_dir / "tls.key").write_bytes(other_key)
    assert _error(tls_dir) == f"{tls_dir / 'tls.key'}: does not belong to {tls_dir / 'tls.crt'} (being replaced?)"


def test_load_refuses_a_key_of_another_algorithm(tls_dir: pathlib.Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    (tls_dir / "tls.key").write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    assert "does not belong to" in _error(tls_dir)


def test_load_accepts_a_chain_in_tls_crt_and_several_cas(tls_dir: pathlib.Path, ca: pki.Ca) -> None:
    leaf = (tls_dir / "tls.crt").read_bytes()
    other_ca = pki.Ca.create("other", now=NOW)
    (tls_dir / "tls.crt").write_bytes(leaf + ca.cert_pem)
    (tls_dir / "ca.crt").write_bytes(ca.cert_pem + other_ca.cert_pem)
    m = tlsmod.Tls(tls_dir).load()
    assert m.cert == leaf + ca.cert_pem and m.ca == ca.cert_pem + other_ca.cert_pem


def test_load_accepts_an_expired_certificate_and_reports_its_expiry(tmp_path: pathlib.Path, ca: pki.Ca) -> None:
    write_tls(tmp_path, ca, NSP_A, now=NOW - 2 * HOUR, lifetime_s=HOUR)
    assert tlsmod.Tls(tmp_path).load().not_after == NOW - HOUR


# ------------------------------------------------------------------ generation

def test_generation_is_stable_while_nothing_changes(tls_dir: pathlib.Path) -> None:
    tls = tlsmod.Tls(tls_dir)
    assert tls.generation() == tls.generation()
    tls.load()
    assert tls.generation() == tls.generation()


def test_generation_has_one_entry_per_file(tls_dir: pathlib.Path) -> None:
    generation = tlsmod.Tls(tls_dir).generation()
    assert len(generation) == 3
    assert generation[0][0] == os.stat(tls_dir / "tls.crt").st_ino
    assert generation[1][0] == os.stat(tls_dir / "tls.key").st_ino
    assert generation[2][0] == os.stat(tls_dir / "ca.crt").st_ino


@pytest.mark.parametrize(("name", "index"), [("tls.crt", 0), ("tls.key", 1), ("ca.crt", 2)])
def test_generation_changes_when_one_file_is_replaced(tls_dir: pathlib.Path, name: str, index: int) -> None:
    tls = tlsmod.Tls(tls_dir)
    before = tls.generation()
    data = (tls_dir / name).read_bytes()
    (tls_dir / "new").write_bytes(data)
    os.replace(tls_dir / "new", tls_dir / name)  # same content, a new file: what a rename into place does
    after = tls.generation()
    assert after[index] != before[index]
    assert [g for i, g in enumerate(after) if i != index] == [g for i, g in enumerate(before) if i != index]


def test_generation_of_a_missing_file_is_zeros(tls_dir: pathlib.Path) -> None:
    (tls_dir / "ca.crt").unlink()
    assert tlsmod.Tls(tls_dir).generation()[2] == (0, 0, 0)


def test_generation_of_a_missing_directory_is_all_zeros(tmp_path: pathlib.Path) -> None:
    assert tlsmod.Tls(tmp_path / "absent").generation() == ((0, 0, 0),) * 3


def test_generation_changes_when_pki_writes_a_new_certificate(tls_dir: pathlib.Path, ca: pki.Ca) -> None:
    tls = tlsmod.Tls(tls_dir)
    before = tls.generation()
    write_tls(tls_dir, ca, NSP_A, now=NOW + 1)
    assert tls.generation() != before


# ------------------------------------------------------------------ credentials

def test_channel_credentials_are_built_from_the_files(tls_dir: pathlib.Path) -> None:
    assert isinstance(tlsmod.Tls(tls_dir).channel_credentials(), grpc.ChannelCredentials)


def test_channel_credentials_raise_the_load_error(tls_dir: pathlib.Path) -> None:
    (tls_dir / "tls.key").unlink()
    with pytest.raises(tlsmod.TlsError, match="tls.key"):
        tlsmod.Tls(tls_dir).channel_credentials()


def test_server_credentials_are_built_from_the_files(tls_dir: pathlib.Path) -> None:
    assert isinstance(tlsmod.Tls(tls_dir).server_credentials(), grpc.ServerCredentials)


def test_server_credentials_raise_the_load_error_at_start(tls_dir: pathlib.Path) -> None:
    (tls_dir / "tls.crt").write_bytes(b"garbage")
    with pytest.raises(tlsmod.TlsError, match="tls.crt: not a PEM certificate"):
        tlsmod.Tls(tls_dir).server_credentials()


# ------------------------------------------------------------------ the server's fetcher

def test_fetcher_gives_an_initial_configuration(tls_dir: pathlib.Path) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), logmod.null)
    assert isinstance(fetcher.initial(), grpc.ServerCertificateConfiguration)


def test_fetcher_answers_none_while_the_files_are_unchanged(tls_dir: pathlib.Path, log: logmod.Logger,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), log)
    assert fetcher() is None
    assert fetcher() is None
    assert _events(caplog) == []


def test_fetcher_answers_a_new_configuration_once_after_a_replacement(tls_dir: pathlib.Path, ca: pki.Ca,
                                                                      log: logmod.Logger,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), log)
    write_tls(tls_dir, ca, NSP_A, now=NOW + 600)
    assert isinstance(fetcher(), grpc.ServerCertificateConfiguration)
    assert fetcher() is None  # taken: the next handshake finds nothing new
    assert _events(caplog) == [("tlsReloaded", {"notAfter": int(NOW + 600 + HOUR)})]


def test_fetcher_keeps_the_current_certificate_when_the_new_files_do_not_belong_together(
        tls_dir: pathlib.Path, ca: pki.Ca, log: logmod.Logger, caplog: pytest.LogCaptureFixture) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), log)
    new_cert, _ = ca.issue(NSP_A, now=NOW + 600)
    (tls_dir / "tls.crt").write_bytes(new_cert)  # the new certificate, still the old key
    assert fetcher() is None
    events = _events(caplog)
    assert [e for e, _ in events] == ["tlsReloadFailed"]
    assert str(events[0][1]["error"]).startswith(f"{tls_dir / 'tls.key'}: does not belong to")


def test_fetcher_looks_again_at_every_handshake_after_a_failed_reload(tls_dir: pathlib.Path, ca: pki.Ca,
                                                                      log: logmod.Logger,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), log)
    (tls_dir / "tls.key").unlink()
    assert fetcher() is None
    assert fetcher() is None
    write_tls(tls_dir, ca, NSP_A, now=NOW + 600)  # the replacement completes
    assert isinstance(fetcher(), grpc.ServerCertificateConfiguration)
    assert fetcher() is None
    assert [e for e, _ in _events(caplog)] == ["tlsReloadFailed", "tlsReloadFailed", "tlsReloaded"]


def test_fetcher_follows_a_certificate_for_another_identity(tls_dir: pathlib.Path, ca: pki.Ca) -> None:
    fetcher = tlsmod._Fetcher(tlsmod.Tls(tls_dir), logmod.null)
    write_tls(tls_dir, ca, TAPA_1)  # whom it names is not the fetcher's business: the files load
    assert fetcher() is not None


def test_fetcher_refuses_to_start_on_broken_files(tls_dir: pathlib.Path) -> None:
    (tls_dir / "ca.crt").write_bytes(b"")
    with pytest.raises(tlsmod.TlsError, match="ca.crt"):
        tlsmod._Fetcher(tlsmod.Tls(tls_dir), logmod.null)


# ------------------------------------------------------------------ from_settings

def test_from_settings_gives_the_directory(tls_dir: pathlib.Path) -> None:
    tls = tlsmod.from_settings(str(tls_dir), False)
    assert tls == tlsmod.Tls(tls_dir)


@pytest.mark.parametrize("tls_dir", ["", "/nonexistent/tls"], ids=["no-dir", "missing-dir"])
def test_from_settings_insecure_is_plain_whatever_the_directory(tls_dir: str) -> None:
    assert tlsmod.from_settings(tls_dir, True) is None


def test_from_settings_refuses_to_start_without_a_directory() -> None:
    with pytest.raises(tlsmod.TlsError) as caught:
        tlsmod.from_settings("", False)
    message = str(caught.value)
    assert message.startswith("--tls-dir / MERIDIO_TLS_DIR: not set")
    assert "MERIDIO_TLS_INSECURE=true" in message and "tls.crt" in message


def test_from_settings_names_the_callers_flag() -> None:
    with pytest.raises(tlsmod.TlsError, match="^--nsp-tls-dir / MERIDIO_TLS_DIR: not set"):
        tlsmod.from_settings("", False, flag="--nsp-tls-dir")


def test_from_settings_refuses_a_directory_whose_files_cannot_be_used(tls_dir: pathlib.Path) -> None:
    (tls_dir / "tls.key").write_bytes(b"")
    with pytest.raises(tlsmod.TlsError, match="tls.key: not a PEM private key"):
        tlsmod.from_settings(str(tls_dir), False)
