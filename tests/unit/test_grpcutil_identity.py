"""The caller's identity on the server side of :mod:`meridio.common.grpcutil`: :func:`peer_identity`, the
status codes of ``Unauthenticated`` and ``PermissionDenied`` (:func:`status_for`, :func:`map_errors`) and
how a client classes them (:func:`error_from_rpc`).

Fake: the servicer context (an object with ``auth_context()`` and ``abort()``). Real: certificates from
:class:`meridio.runtime.local.pki.Ca`. No server runs, no network.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.common.retry import PermanentError, TemporaryError
from meridio.runtime.local import pki
from tests.unit.tls_samples import NOW, C, dns, ident, self_signed, uri


class FakeContext:
    """The two methods of ``grpc.aio.ServicerContext`` these helpers use."""

    def __init__(self, auth: dict[str, list[bytes]] | None = None) -> None:
        self.auth = auth or {}
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


@pytest.fixture(scope="module")
def ca() -> pki.Ca:
    return pki.Ca.create("e2e", now=NOW)


def verified(cert: bytes) -> FakeContext:
    return FakeContext({"transport_security_type": [b"ssl"], "x509_pem_cert": [cert]})


# ------------------------------------------------------------------ peer_identity

def test_peer_identity_is_the_verified_certificates_identity(ca: pki.Ca) -> None:
    who = ident(C.PROXY, "proxy-a-1", node="node-1")
    assert grpcutil.peer_identity(verified(ca.issue(who, now=NOW)[0])) == who


@pytest.mark.parametrize("auth", [{}, {"x509_pem_cert": []}, {"transport_security_type": [b"insecure"]}],
                         ids=["plain", "empty-certificate-list", "insecure-transport"])
def test_peer_identity_without_a_verified_certificate_is_unauthenticated(auth: dict[str, list[bytes]]) -> None:
    with pytest.raises(grpcutil.Unauthenticated, match=r"^caller has no verified certificate \(mutual TLS required\)$"):
        grpcutil.peer_identity(FakeContext(auth))


def test_peer_identity_of_a_certificate_without_identity_is_unauthenticated() -> None:
    with pytest.raises(grpcutil.Unauthenticated) as caught:
        grpcutil.peer_identity(verified(self_signed([dns("nsp.meridio.local")])))
    assert str(caught.value) == \
        "caller identity: peer certificate must carry exactly one spiffe:// URI SAN, it has 0"


def test_peer_identity_of_an_invalid_spiffe_uri_is_unauthenticated_naming_the_rule() -> None:
    with pytest.raises(grpcutil.Unauthenticated, match="^caller identity: identity .*unknown component 'gateway'"):
        grpcutil.peer_identity(verified(self_signed([uri("spiffe://meridio.local/e2e/gateway/gw")])))


def test_unauthenticated_is_permanent_and_not_an_identity_error() -> None:
    exc = grpcutil.Unauthenticated("x")
    assert isinstance(exc, PermanentError) and not isinstance(exc, idm.IdentityError)


# ------------------------------------------------------------------ status codes

@pytest.mark.parametrize(("exc", "code"), [
    (grpcutil.Unauthenticated("no certificate"), grpc.StatusCode.UNAUTHENTICATED),
    (grpcutil.PermissionDenied("not yours"), grpc.StatusCode.PERMISSION_DENIED),
    (PermanentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),  # the parent class keeps its own code
], ids=["unauthenticated", "permission-denied", "plain-permanent"])
def test_status_for_the_identity_errors(exc: Exception, code: grpc.StatusCode) -> None:
    assert grpcutil.status_for(exc) is code


class Servicer:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    @grpcutil.map_errors()
    async def Unary(self, request: object, context: FakeContext) -> str:
        grpcutil.peer_identity(context)
        raise self.exc

    @grpcutil.map_errors()
    async def Stream(self, request: object, context: FakeContext) -> AsyncIterator[str]:
        yield "first"
        grpcutil.peer_identity(context)
        raise self.exc


async def test_map_errors_answers_unauthenticated_for_a_caller_without_certificate() -> None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer(RuntimeError("not reached")).Unary(None, context)
    assert context.aborted == (grpc.StatusCode.UNAUTHENTICATED,
                               "caller has no verified certificate (mutual TLS required)")


async def test_map_errors_answers_permission_denied_with_the_rule(ca: pki.Ca) -> None:
    context = verified(ca.issue(ident(C.NSP, "nsp-a"), now=NOW)[0])
    with pytest.raises(grpc.aio.AbortError):
        await Servicer(grpcutil.PermissionDenied("nsp nsp-a may not register targets")).Unary(None, context)
    assert context.aborted == (grpc.StatusCode.PERMISSION_DENIED, "nsp nsp-a may not register targets")


async def test_map_errors_answers_the_identity_codes_in_a_stream_too(ca: pki.Ca) -> None:
    context = verified(ca.issue(ident(C.LB, "lb-0"), now=NOW)[0])
    got: list[str] = []
    with pytest.raises(grpc.aio.AbortError):
        async for item in Servicer(grpcutil.PermissionDenied("lb lb-0 may not")).Stream(None, context):
            got.append(item)
    assert got == ["first"]
    assert context.aborted == (grpc.StatusCode.PERMISSION_DENIED, "lb lb-0 may not")


# ------------------------------------------------------------------ the client's side

def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED],
                         ids=["unauthenticated", "permission-denied"])
def test_a_client_does_not_retry_an_identity_refusal(code: grpc.StatusCode) -> None:
    exc = grpcutil.error_from_rpc(_rpc_error(code, "not yours"), "Register")
    assert isinstance(exc, PermanentError) and not isinstance(exc, TemporaryError)
    assert str(exc) == f"Register: {code.name}: not yours"
    assert code not in grpcutil.TEMPORARY_CODES
