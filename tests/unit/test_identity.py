"""SPIFFE-style identities (:mod:`meridio.common.identity`): the URI grammar both ways, the segment rules,
the server names, and reading the identity out of a certificate and out of a gRPC auth context.

Real: ``cryptography`` certificates (from :class:`meridio.runtime.local.pki.Ca` and hand-built ones).
Nothing is faked; no network.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meridio.common import identity as idm
from meridio.runtime.local import pki
from tests.unit.tls_samples import NOW, C, dns, ident, self_signed, uri

D = "spiffe://meridio.local"


# ------------------------------------------------------------------ the grammar, both ways

GOOD = [
    (f"{D}/e2e/trench/trench-a/nsp/nsp-trench-a", ident(C.NSP, "nsp-trench-a")),
    (f"{D}/e2e/trench/trench-a/node/node-1/proxy/proxy-conduit-a-1-node-1",
     ident(C.PROXY, "proxy-conduit-a-1-node-1", node="node-1")),
    (f"{D}/e2e/node/node-2/tapa/target-a-1", ident(C.TAPA, "target-a-1", trench=None, node="node-2")),
    (f"{D}/e2e/runtime/daemon", ident(C.RUNTIME, "daemon", trench=None)),
    ("spiffe://example.org/prod/trench/t/lb/lb-0",
     idm.Identity(cluster="prod", component=C.LB, pod="lb-0", trench="t", trust_domain="example.org")),
    # names that look like the grammar's keywords are still plain names in their own place
    (f"{D}/trench/trench/trench/node/node/frontend/trench",
     idm.Identity(cluster="trench", component=C.FRONTEND, pod="trench", trench="trench", node="node")),
    (f"{D}/node/nsp/node", idm.Identity(cluster="node", component=C.NSP, pod="node")),
]
GOOD_IDS = ["nsp", "proxy-with-trench-and-node", "tapa-node-only", "runtime-neither", "other-trust-domain",
            "keyword-names-with-trench-and-node", "keyword-names-bare"]


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=GOOD_IDS)
def test_parse_reads_each_documented_shape(text: str, expected: idm.Identity) -> None:
    assert idm.parse(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=GOOD_IDS)
def test_uri_renders_the_same_text_parse_reads(text: str, expected: idm.Identity) -> None:
    assert expected.uri == text
    assert str(expected) == text


_segment = st.from_regex(r"[A-Za-z0-9._-]{1,63}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(cluster=_segment, component=st.sampled_from(list(C)), pod=_segment, trench=st.none() | _segment,
       node=st.none() | _segment, domain=_segment)
def test_parse_of_uri_is_the_identity_for_every_valid_identity(cluster: str, component: idm.Component, pod: str,
                                                               trench: str | None, node: str | None,
                                                               domain: str) -> None:
    who = idm.Identity(cluster=cluster, component=component, pod=pod, trench=trench, node=node, trust_domain=domain)
    assert idm.parse(who.uri) == who


def test_the_default_trust_domain_is_meridio_local() -> None:
    assert ident(C.NSP, "n").trust_domain == idm.TRUST_DOMAIN == "meridio.local"
    assert ident(C.NSP, "n").uri.startswith("spiffe://meridio.local/")


BAD = [
    ("https://meridio.local/e2e/nsp/p", "must start with spiffe://"),
    ("SPIFFE://meridio.local/e2e/nsp/p", "must start with spiffe://"),
    (D, "needs <cluster>/<component>/<pod>"),
    (f"{D}/e2e/nsp", "needs <cluster>/<component>/<pod>"),
    (f"{D}/e2e/trench/trench-a/nsp", "expected [/trench/T][/node/N]/<component>/<pod>"),
    (f"{D}/e2e/node/node-1/trench/trench-a/proxy/p", "expected [/trench/T][/node/N]/<component>/<pod>"),
    (f"{D}/e2e/nsp/p/extra", "expected [/trench/T][/node/N]/<component>/<pod>"),
    (f"{D}/e2e/nsp/p/", "expected [/trench/T][/node/N]/<component>/<pod>"),
    (f"{D}/e2e//nsp/p", "expected [/trench/T][/node/N]/<component>/<pod>"),
    (f"{D}/e2e/gateway/p", "unknown component 'gateway' (one of nsp, ipam, lb, frontend, proxy, tapa, runtime)"),
    (f"{D}/e2e/NSP/p", "unknown component 'NSP'"),
    ("spiffe:///e2e/nsp/p", "trust domain '': must be 1-63 characters"),
    ("spiffe://meridio.local:443/e2e/nsp/p", "trust domain 'meridio.local:443'"),
    ("spiffe://user@meridio.local/e2e/nsp/p", "trust domain 'user@meridio.local'"),
    (f"{D}/e2e/nsp/..", "pod '..'"),
    (f"{D}/e2e/nsp/.", "pod '.'"),
    (f"{D}/e2e/nsp/p?x=1", "pod 'p?x=1'"),
    (f"{D}/e 2e/nsp/p", "cluster 'e 2e'"),
    (f"{D}/e2e/trench/trénch/nsp/p", "trench 'trénch'"),
    (f"{D}/e2e/trench/t/node//proxy/p", "node ''"),
    (f"{D}/e2e/nsp/{'p' * 64}", "pod 'pppp"),
]
BAD_IDS = ["other-scheme", "upper-case-scheme", "no-path", "two-segments", "trench-without-pod",
           "node-before-trench", "extra-segment", "trailing-slash", "empty-segment", "unknown-component",
           "component-is-case-sensitive", "empty-trust-domain", "port-in-trust-domain", "userinfo",
           "dot-dot-pod", "dot-pod", "query-in-pod", "space-in-cluster", "non-ascii-trench", "empty-node",
           "pod-of-64"]


@pytest.mark.parametrize(("text", "rule"), BAD, ids=BAD_IDS)
def test_parse_refuses_a_uri_naming_the_rule_it_breaks(text: str, rule: str) -> None:
    with pytest.raises(idm.IdentityError) as caught:
        idm.parse(text)
    assert rule in str(caught.value)


def test_identity_error_is_a_value_error() -> None:
    assert issubclass(idm.IdentityError, ValueError)


def test_parse_refuses_a_uri_over_2048_characters_before_reading_it() -> None:
    text = f"{D}/e2e/nsp/" + "p" * 2048
    with pytest.raises(idm.IdentityError, match="longer than 2048 characters"):
        idm.parse(text)


def test_a_uri_of_2048_characters_is_read_not_refused_for_length() -> None:
    text = f"{D}/e2e/nsp/" + "p" * (2048 - len(f"{D}/e2e/nsp/"))
    assert len(text) == 2048
    with pytest.raises(idm.IdentityError) as caught:
        idm.parse(text)
    assert "longer than" not in str(caught.value) and "pod" in str(caught.value)


def test_an_error_quotes_at_most_64_characters_of_the_input() -> None:
    with pytest.raises(idm.IdentityError) as caught:
        idm.parse("x" * 5000)
    assert "x" * 64 in str(caught.value) and "x" * 65 not in str(caught.value)


def test_segments_of_63_characters_are_accepted() -> None:
    n = "n" * 63
    who = idm.Identity(cluster=n, component=C.PROXY, pod=n, trench=n, node=n, trust_domain=n)
    assert idm.parse(who.uri) == who


@pytest.mark.parametrize(("field", "value"), [
    ("cluster", ""), ("pod", "a/b"), ("trench", ".."), ("node", "."), ("trust_domain", "d" * 64), ("pod", "p\n"),
], ids=["empty-cluster", "slash-in-pod", "dot-dot-trench", "dot-node", "long-trust-domain", "newline-in-pod"])
def test_identity_refuses_a_bad_segment_when_built(field: str, value: str) -> None:
    fields: dict[str, str] = {"cluster": "e2e", "pod": "p", "trench": "t", "node": "n", "trust_domain": "meridio.local"}
    fields[field] = value
    with pytest.raises(idm.IdentityError, match=field.replace("_", " ")):
        idm.Identity(component=C.NSP, **fields)


def test_identity_is_frozen_and_hashable() -> None:
    who = ident(C.NSP, "n")
    assert {who: 1}[ident(C.NSP, "n")] == 1
    with pytest.raises(AttributeError):
        who.pod = "other"  # type: ignore[misc]


# ------------------------------------------------------------------ server names

@pytest.mark.parametrize("component", list(C), ids=[c.value for c in C])
def test_server_name_is_the_component_under_meridio_local(component: idm.Component) -> None:
    assert idm.server_name(component) == f"{component.value}.meridio.local"


def test_server_name_of_the_nsp() -> None:
    assert idm.server_name(C.NSP) == "nsp.meridio.local"


# ------------------------------------------------------------------ from a certificate

@pytest.fixture(scope="module")
def ca() -> pki.Ca:
    return pki.Ca.create("e2e", now=NOW)


def test_from_certificate_pem_reads_the_identity_pki_issued(ca: pki.Ca) -> None:
    who = ident(C.PROXY, "proxy-1", node="node-1")
    cert, _ = ca.issue(who, now=NOW)
    assert idm.from_certificate_pem(cert) == who


def test_from_certificate_pem_ignores_uri_sans_of_other_schemes() -> None:
    pem = self_signed([uri("https://example.org/x"), uri(f"{D}/e2e/nsp/nsp-a"), dns("nsp.meridio.local")])
    assert idm.from_certificate_pem(pem) == ident(C.NSP, "nsp-a", trench=None)


def test_from_certificate_pem_refuses_a_certificate_without_san() -> None:
    with pytest.raises(idm.IdentityError, match="has no subject alternative name"):
        idm.from_certificate_pem(self_signed(None))


def test_from_certificate_pem_refuses_a_certificate_with_only_dns_sans() -> None:
    with pytest.raises(idm.IdentityError, match="exactly one spiffe:// URI SAN, it has 0"):
        idm.from_certificate_pem(self_signed([dns("nsp.meridio.local")]))


def test_from_certificate_pem_refuses_two_spiffe_uri_sans() -> None:
    pem = self_signed([uri(f"{D}/e2e/nsp/nsp-a"), uri(f"{D}/e2e/trench/t/lb/lb-0")])
    with pytest.raises(idm.IdentityError, match="exactly one spiffe:// URI SAN, it has 2"):
        idm.from_certificate_pem(pem)


def test_from_certificate_pem_refuses_a_spiffe_uri_that_is_no_meridio_identity() -> None:
    with pytest.raises(idm.IdentityError, match="unknown component 'gateway'"):
        idm.from_certificate_pem(self_signed([uri(f"{D}/e2e/gateway/gw-0")]))


@pytest.mark.parametrize("pem", [b"", b"not a certificate",
                                 b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
                         ids=["empty", "text", "bad-base64-body"])
def test_from_certificate_pem_refuses_bytes_that_are_no_certificate(pem: bytes) -> None:
    with pytest.raises(idm.IdentityError, match="peer certificate cannot be read"):
        idm.from_certificate_pem(pem)


def test_from_certificate_pem_refuses_the_same_bad_certificate_every_time() -> None:
    pem = self_signed([dns("x.meridio.local")])
    for _ in range(2):  # the cache keeps answers, never swallows a refusal
        with pytest.raises(idm.IdentityError):
            idm.from_certificate_pem(pem)


# ------------------------------------------------------------------ from a gRPC auth context

@pytest.mark.parametrize("auth", [{}, {"x509_pem_cert": []}, {"transport_security_type": [b"ssl"]}],
                         ids=["empty", "no-certificate", "ssl-without-peer-certificate"])
def test_from_auth_context_is_none_without_a_verified_certificate(auth: dict[str, list[bytes]]) -> None:
    assert idm.from_auth_context(auth) is None


def test_from_auth_context_reads_the_peer_certificate(ca: pki.Ca) -> None:
    who = ident(C.LB, "lb-a-0")
    cert, _ = ca.issue(who, now=NOW)
    auth = {"transport_security_type": [b"ssl"], "x509_pem_cert": [cert],
            "x509_subject_alternative_name": [b"lb.meridio.local"]}
    assert idm.from_auth_context(auth) == who


def test_from_auth_context_raises_for_a_verified_certificate_without_identity() -> None:
    with pytest.raises(idm.IdentityError, match="it has 0"):
        idm.from_auth_context({"x509_pem_cert": [self_signed([dns("nsp.meridio.local")])]})
