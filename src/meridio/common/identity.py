"""Who a gRPC peer is: SPIFFE-style identities of Meridio's components and pods (pure, plus one adapter).

Every component certificate carries exactly one URI SAN of this grammar::

    spiffe://<trust-domain>/<cluster>[/trench/<trench>][/node/<node>]/<component>/<pod>

- ``trust-domain``: ``meridio.local`` for the local runtime (any DNS-style name is accepted);
- ``cluster``: the environment (local runtime) or cluster name;
- ``trench``: present for every per-trench component (nsp, ipam, lb, frontend, proxy); absent for a
  TAPA, whose target may open streams of any trench it is given, and for the runtime itself;
- ``node``: present for the components bound to a node (proxy, TAPA, lb, frontend): IPAM allocates for
  a proxy's own node only, and a proxy links only the TAPAs of its node;
- ``component``: one of :class:`Component`; ``pod``: the pod (or process) name.

Each segment is 1–63 characters of ``[A-Za-z0-9._-]`` (no ``/``, no empty segment, not ``.``/``..``),
so the grammar cannot be confused by a name. Examples::

    spiffe://meridio.local/e2e/trench/trench-a/nsp/nsp-trench-a
    spiffe://meridio.local/e2e/trench/trench-a/node/node-1/proxy/proxy-conduit-a-1-node-1
    spiffe://meridio.local/e2e/node/node-2/tapa/target-a-1

:func:`from_auth_context` reads the verified peer certificate of a call (``x509_pem_cert`` in grpc's
``context.auth_context()``, present only when the TLS handshake verified it against our CA) and
returns the :class:`Identity` it names, or ``None`` on a plain or unverified connection.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Mapping, Sequence

from cryptography import x509

from meridio.common.bounds import quote

__all__ = ["TRUST_DOMAIN", "SCHEME", "Component", "Identity", "IdentityError", "parse", "from_certificate_pem",
           "from_auth_context", "server_name"]

TRUST_DOMAIN = "meridio.local"
SCHEME = "spiffe://"
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,63}")


class IdentityError(ValueError):
    """A URI that is not a Meridio identity (the message says which rule it breaks)."""


class Component(enum.Enum):
    NSP = "nsp"
    IPAM = "ipam"
    LB = "lb"
    FRONTEND = "frontend"
    PROXY = "proxy"
    TAPA = "tapa"
    RUNTIME = "runtime"


def server_name(component: Component) -> str:
    """The DNS SAN a server of ``component`` carries and its clients check (``nsp.meridio.local``)."""
    return f"{component.value}.{TRUST_DOMAIN}"


def _check_segment(what: str, value: str) -> None:
    if not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise IdentityError(f"{what} {quote(value)}: must be 1-63 characters of A-Z a-z 0-9 . _ -")


@dataclasses.dataclass(frozen=True)
class Identity:
    cluster: str
    component: Component
    pod: str
    trench: str | None = None
    node: str | None = None
    trust_domain: str = TRUST_DOMAIN

    def __post_init__(self) -> None:
        _check_segment("trust domain", self.trust_domain)
        _check_segment("cluster", self.cluster)
        _check_segment("pod", self.pod)
        if self.trench is not None:
            _check_segment("trench", self.trench)
        if self.node is not None:
            _check_segment("node", self.node)

    @property
    def uri(self) -> str:
        parts = [self.cluster]
        if self.trench is not None:
            parts += ["trench", self.trench]
        if self.node is not None:
            parts += ["node", self.node]
        parts += [self.component.value, self.pod]
        return f"{SCHEME}{self.trust_domain}/" + "/".join(parts)

    def __str__(self) -> str:
        return self.uri


def parse(uri: str) -> Identity:
    """The :class:`Identity` of ``uri``; :class:`IdentityError` naming the rule otherwise."""
    shown = quote(uri)
    if not uri.startswith(SCHEME):
        raise IdentityError(f"identity {shown}: must start with {SCHEME}")
    if len(uri) > 2048:
        raise IdentityError(f"identity {shown}: longer than 2048 characters")
    domain, _, path = uri[len(SCHEME):].partition("/")
    segments = path.split("/") if path else []
    if len(segments) < 3:
        raise IdentityError(f"identity {shown}: needs <cluster>/<component>/<pod> after the trust domain")
    _check_segment("trust domain", domain)
    cluster, rest = segments[0], segments[1:]
    trench = node = None
    if rest[0] == "trench" and len(rest) >= 4:
        trench, rest = rest[1], rest[2:]
    if rest[0] == "node" and len(rest) >= 4:
        node, rest = rest[1], rest[2:]
    if len(rest) != 2:
        raise IdentityError(f"identity {shown}: expected [/trench/T][/node/N]/<component>/<pod>")
    try:
        component = Component(rest[0])
    except ValueError:
        raise IdentityError(f"identity {shown}: unknown component {quote(rest[0])} "
                            f"(one of {', '.join(c.value for c in Component)})") from None
    return Identity(cluster=cluster, component=component, pod=rest[1], trench=trench, node=node,
                    trust_domain=domain)


@functools.lru_cache(maxsize=256)
def from_certificate_pem(pem: bytes) -> Identity:
    """The identity of a certificate: its one ``spiffe://`` URI SAN (cached per certificate)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise IdentityError(f"peer certificate cannot be read: {exc}") from None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("peer certificate has no subject alternative name") from None
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(SCHEME)]
    if len(uris) != 1:
        raise IdentityError(f"peer certificate must carry exactly one {SCHEME} URI SAN, it has {len(uris)}")
    return parse(uris[0])


def from_auth_context(auth: Mapping[str, Sequence[bytes]]) -> Identity | None:
    """The verified peer's identity from ``context.auth_context()``; ``None`` without a verified certificate.

    Raises :class:`IdentityError` when the peer's certificate (signed by our CA) names no valid identity.
    """
    pems = auth.get("x509_pem_cert") or ()
    if not pems:
        return None
    return from_certificate_pem(bytes(pems[0]))
