"""Meridio's resources (``meridio.nordix.org/v1``) as frozen dataclasses, read from and written to YAML.

Trench, Conduit, Stream, Flow, Vip, Attractor and Gateway carry every field of Meridio's CRDs with
the CRD defaults (Trench ``ip-family: dualstack``, Attractor ``replicas: 1`` and ``interface.type:
nsm-vlan``, network-attachment ``namespace: default``, Conduit ``type: stateless-lb``, Gateway
``protocol: bgp``, BGP ports 179 when ``bgp`` is given). ``v1alpha1`` is accepted and normalised to
``v1``. A ``NetworkAttachmentDefinition`` (``k8s.cni.cncf.io/v1``), which Meridio's e2e files carry
next to the Attractors, is read and written too (the local runtime interprets its ``config``).

Reading is strict like the API server with the CRD schema (see :mod:`meridio.api.schema` and
:mod:`meridio.api.meta`): every problem is reported as a :class:`~meridio.api.problems.Problem`
naming the object, field and rule, and nothing is returned unless the whole input is clean.
Writing gives the stored form (defaults filled, empty optional fields left out, no status), so
``parse(to_dict(r)) == r`` always and ``to_dict(parse(d)) == d`` for stored-form ``d``.

Callers: ``meridio validate``/``render``, the local runtime (``apply``, ``get -o yaml``), the operator.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeAlias

from meridio.api import meta, schema, yamlio
from meridio.api import problems as pb
from meridio.api.checks import PROTOCOLS
from meridio.api.meta import Metadata
from meridio.api.schema import key as yaml_key

__all__ = [
    "GROUP", "API_VERSION", "NAD_API_VERSION", "Metadata", "Resource", "KINDS", "MERIDIO_KINDS",
    "Trench", "TrenchSpec", "Conduit", "ConduitSpec", "PortNatSpec", "Stream", "StreamSpec", "Flow", "FlowSpec",
    "Vip", "VipSpec", "Attractor", "AttractorSpec", "InterfaceSpec", "NsmVlanSpec", "NetworkAttachmentSpec",
    "Gateway", "GatewaySpec", "BgpSpec", "StaticSpec", "BfdSpec", "BgpAuthSpec",
    "NetworkAttachmentDefinition", "NadSpec",
    "parse_object", "parse_documents", "loads", "load_file", "load_files", "to_dict", "dumps", "check_schema",
]

GROUP = "meridio.nordix.org"
API_VERSION = f"{GROUP}/v1"
ACCEPTED_VERSIONS = (API_VERSION, f"{GROUP}/v1alpha1")
NAD_API_VERSION = "k8s.cni.cncf.io/v1"

INTERFACE_NAME = r"^[^:\//\s]{1,13}$"
KEY_NAME = r"^[-._a-zA-Z0-9]+$"
U16, U32, I32_MIN, I32_MAX = 65535, 4294967295, -2147483648, 2147483647


@dataclasses.dataclass(frozen=True)
class _Base:
    KIND: ClassVar[str] = ""
    API_VERSION: ClassVar[str] = API_VERSION
    metadata: Metadata

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def trench(self) -> str | None:
        """The ``trench`` label (the Trench's own name for a Trench)."""
        return self.metadata.name if self.KIND == "Trench" else self.metadata.label("trench")

    @property
    def ref(self) -> tuple[str, str, str]:
        """Identity: ``(kind, namespace, name)``."""
        return self.KIND, self.metadata.namespace, self.metadata.name


# --- Trench -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrenchSpec:
    ip_family: str = yaml_key("ip-family", "dualstack", enum=("dualstack", "ipv4", "ipv6"), omit=schema.OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class Trench(_Base):
    KIND: ClassVar[str] = "Trench"
    spec: TrenchSpec = TrenchSpec()


# --- Conduit ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PortNatSpec:
    port: int = yaml_key("port", 0, required=True, minimum=0, maximum=U16)
    target_port: int = yaml_key("target-port", 0, required=True, minimum=0, maximum=U16)
    vips: tuple[str, ...] = yaml_key("vips", (), required=True)
    protocol: str = yaml_key("protocol", "", required=True, enum=PROTOCOLS)


@dataclasses.dataclass(frozen=True)
class ConduitSpec:
    type: str = yaml_key("type", "stateless-lb", enum=("stateless-lb",), omit=schema.OMIT_NEVER)
    destination_port_nats: tuple[PortNatSpec, ...] = yaml_key("destination-port-nats", ())


@dataclasses.dataclass(frozen=True)
class Conduit(_Base):
    KIND: ClassVar[str] = "Conduit"
    spec: ConduitSpec = ConduitSpec()


# --- Stream -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StreamSpec:
    conduit: str = yaml_key("conduit", "")
    max_targets: int | None = yaml_key("max-targets", None, minimum=0, maximum=U32)
    """None = not set (the ConfigMap then says 100)."""


@dataclasses.dataclass(frozen=True)
class Stream(_Base):
    KIND: ClassVar[str] = "Stream"
    spec: StreamSpec = StreamSpec()


# --- Flow -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FlowSpec:
    stream: str = yaml_key("stream", "")
    vips: tuple[str, ...] = yaml_key("vips", (), required=True)
    source_subnets: tuple[str, ...] = yaml_key("source-subnets", ())
    source_ports: tuple[str, ...] = yaml_key("source-ports", ())
    destination_ports: tuple[str, ...] = yaml_key("destination-ports", ())
    protocols: tuple[str, ...] = yaml_key("protocols", (), required=True, enum=PROTOCOLS)
    priority: int = yaml_key("priority", 0, required=True, minimum=I32_MIN, maximum=I32_MAX)
    byte_matches: tuple[str, ...] = yaml_key("byte-matches", ())


@dataclasses.dataclass(frozen=True)
class Flow(_Base):
    KIND: ClassVar[str] = "Flow"
    spec: FlowSpec = FlowSpec()


# --- Vip --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VipSpec:
    address: str = yaml_key("address", "")


@dataclasses.dataclass(frozen=True)
class Vip(_Base):
    KIND: ClassVar[str] = "Vip"
    spec: VipSpec = VipSpec()


# --- Attractor --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NsmVlanSpec:
    base_interface: str = yaml_key("base-interface", "")
    vlan_id: int | None = yaml_key("vlan-id", None, minimum=I32_MIN, maximum=I32_MAX)


@dataclasses.dataclass(frozen=True)
class NetworkAttachmentSpec:
    name: str = yaml_key("name", "", pattern=meta.RFC1123_SUBDOMAIN_PATTERN, max_length=253)
    namespace: str = yaml_key("namespace", "default", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}?[a-z0-9])?$")
    interface: str = yaml_key("interface", "", pattern=INTERFACE_NAME)
    """The pod interface name (defaults to ``interface.name`` when empty)."""


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    name: str = yaml_key("name", "", required=True, pattern=INTERFACE_NAME)
    ipv4_prefix: str = yaml_key("ipv4-prefix", "")
    ipv6_prefix: str = yaml_key("ipv6-prefix", "")
    type: str = yaml_key("type", "nsm-vlan", enum=("nsm-vlan", "network-attachment"), omit=schema.OMIT_NEVER)
    nsm_vlan: NsmVlanSpec = yaml_key("nsm-vlan", NsmVlanSpec())
    network_attachments: tuple[NetworkAttachmentSpec, ...] = yaml_key("network-attachments", ())


@dataclasses.dataclass(frozen=True)
class AttractorSpec:
    replicas: int | None = yaml_key("replicas", 1, minimum=I32_MIN, maximum=I32_MAX)
    composites: tuple[str, ...] = yaml_key("composites", (), required=True)
    gateways: tuple[str, ...] = yaml_key("gateways", ())
    vips: tuple[str, ...] = yaml_key("vips", ())
    interface: InterfaceSpec = yaml_key("interface", InterfaceSpec(), required=True)


@dataclasses.dataclass(frozen=True)
class Attractor(_Base):
    KIND: ClassVar[str] = "Attractor"
    spec: AttractorSpec = AttractorSpec()


# --- Gateway ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BfdSpec:
    switch: bool | None = yaml_key("switch", None)
    min_tx: str = yaml_key("min-tx", "")
    """A Go duration (``300ms``)."""
    min_rx: str = yaml_key("min-rx", "")
    multiplier: int | None = yaml_key("multiplier", None, minimum=0, maximum=U16)


@dataclasses.dataclass(frozen=True)
class BgpAuthSpec:
    key_name: str = yaml_key("key-name", "", pattern=KEY_NAME)
    key_source: str = yaml_key("key-source", "", pattern=meta.RFC1123_SUBDOMAIN_PATTERN, max_length=253)


@dataclasses.dataclass(frozen=True)
class BgpSpec:
    remote_asn: int | None = yaml_key("remote-asn", None, minimum=0, maximum=U32)
    local_asn: int | None = yaml_key("local-asn", None, minimum=0, maximum=U32)
    bfd: BfdSpec = yaml_key("bfd", BfdSpec())
    hold_time: str = yaml_key("hold-time", "")
    """A Go duration (``24s``); rounded to seconds in the ConfigMap."""
    remote_port: int | None = yaml_key("remote-port", 179, minimum=1, maximum=U16)
    local_port: int | None = yaml_key("local-port", 179, minimum=1, maximum=U16)
    auth: BgpAuthSpec | None = yaml_key("auth", None)


@dataclasses.dataclass(frozen=True)
class StaticSpec:
    bfd: BfdSpec = yaml_key("bfd", BfdSpec())


@dataclasses.dataclass(frozen=True)
class GatewaySpec:
    address: str = yaml_key("address", "", required=True)
    protocol: str = yaml_key("protocol", "bgp", enum=("bgp", "static"), omit=schema.OMIT_NEVER)
    bgp: BgpSpec | None = yaml_key("bgp", None)
    """None = not given (then no port defaults either, as with the CRD)."""
    static: StaticSpec | None = yaml_key("static", None)


@dataclasses.dataclass(frozen=True)
class Gateway(_Base):
    KIND: ClassVar[str] = "Gateway"
    spec: GatewaySpec = GatewaySpec()


# --- NetworkAttachmentDefinition (Multus) -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NadSpec:
    config: str = yaml_key("config", "")
    """The CNI configuration, a JSON document in a string."""


@dataclasses.dataclass(frozen=True)
class NetworkAttachmentDefinition(_Base):
    KIND: ClassVar[str] = "NetworkAttachmentDefinition"
    API_VERSION: ClassVar[str] = NAD_API_VERSION
    spec: NadSpec = NadSpec()


Resource: TypeAlias = Trench | Conduit | Stream | Flow | Vip | Attractor | Gateway | NetworkAttachmentDefinition
MERIDIO_KINDS: dict[str, type[Any]] = {
    c.KIND: c for c in (Trench, Conduit, Stream, Flow, Vip, Attractor, Gateway)}
KINDS: dict[str, type[Any]] = {**MERIDIO_KINDS, NetworkAttachmentDefinition.KIND: NetworkAttachmentDefinition}


# --- reading ----------------------------------------------------------------------------------------

_SPEC_TYPES: dict[str, type[Any]] = {
    "Trench": TrenchSpec, "Conduit": ConduitSpec, "Stream": StreamSpec, "Flow": FlowSpec, "Vip": VipSpec,
    "Attractor": AttractorSpec, "Gateway": GatewaySpec, "NetworkAttachmentDefinition": NadSpec,
}
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
STATUS_FIELDS = ("conditions", "observedGeneration")
"""What a stored object's ``status`` may hold (written by the operator; never read as configuration)."""


def _resolve_kind(doc: Mapping[str, Any]) -> tuple[type[Any] | None, str | None]:
    """The class for ``apiVersion``/``kind`` or an API-server-like error message."""
    kind, version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        return None, "kind: Required value: Object 'Kind' is missing"
    if not isinstance(version, str) or not version:
        return None, "apiVersion: Required value: Object 'apiVersion' is missing"
    cls = KINDS.get(kind)
    accepted = (NAD_API_VERSION,) if cls is NetworkAttachmentDefinition else ACCEPTED_VERSIONS
    if cls is None or version not in accepted:
        return None, f'no matches for kind "{kind}" in version "{version}"'
    return cls, None


def _identity(doc: Any, fallback: str) -> tuple[str, str]:
    if not isinstance(doc, Mapping):
        return "", fallback
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else ""
    md = doc.get("metadata")
    name = md.get("name") if isinstance(md, Mapping) and isinstance(md.get("name"), str) else ""
    return kind or "", name or fallback


def parse_object(doc: Any, *, where: str = "<object>") -> Resource:
    """One resource from a decoded YAML/JSON mapping; :class:`ProblemsError` listing every problem."""
    kind, name = _identity(doc, where)

    def problem(field: str, message: str) -> pb.Problem:
        if kind:
            return pb.Problem(kind, name, field, message)
        return pb.Problem("", "", where, f"{field}: {message}" if field else message)

    if not isinstance(doc, Mapping):
        raise pb.ProblemsError([problem("", pb.invalid(doc, "must be of type object"))])
    cls, error = _resolve_kind(doc)
    if cls is None:
        raise pb.ProblemsError([pb.Problem("", "", where, error or "")])
    found = [problem(k, pb.unknown_field(str(k))) for k in doc if k not in _TOP_LEVEL]
    metadata, md_issues = meta.decode_metadata(doc.get("metadata"))
    found.extend(problem(i.path, i.message) for i in md_issues)
    status = doc.get("status")
    if status is not None and status != {}:
        # The operator's Ready conditions (the CRDs' status schema); Meridio's own status is empty.
        bad = [k for k in status if k not in STATUS_FIELDS] if isinstance(status, Mapping) else [""]
        found.extend(problem(f"status.{k}" if k else "status", pb.unknown_field(f"status.{k}" if k else "status"))
                     for k in bad)
    raw_spec = doc.get("spec")
    spec, issues = schema.decode(_SPEC_TYPES[cls.KIND], {} if raw_spec is None else raw_spec, "spec")
    found.extend(problem(i.path or "spec", i.message) for i in issues)
    if found or metadata is None or spec is None:
        raise pb.ProblemsError(found)
    return cls(metadata=metadata, spec=spec)  # type: ignore[no-any-return]


def _flatten(docs: Iterable[Any]) -> Iterable[Any]:
    """Documents, with ``kind: List`` expanded into its items (as kubectl does)."""
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def parse_documents(docs: Iterable[Any], source: str = "<input>") -> list[Resource]:
    """Every resource of the documents, in order; :class:`ProblemsError` with all problems of all objects."""
    out: list[Resource] = []
    found: list[pb.Problem] = []
    first: dict[tuple[str, str, str], int] = {}
    for i, doc in enumerate(_flatten(docs)):
        try:
            obj = parse_object(doc, where=f"{source}: document {i + 1}")
        except pb.ProblemsError as exc:
            found.extend(exc.problems)
            continue
        out.append(obj)
        # Two objects of one kind and name in one file: an error, not "the last one wins" (several
        # files in one apply are still applied in order, a later one updating an earlier one).
        if obj.ref in first:
            found.append(pb.Problem(obj.KIND, obj.name[:64], "metadata.name", f"Duplicate value: {obj.name[:64]!r}: "
                                    f"documents {first[obj.ref]} and {i + 1} of {source} are the same {obj.KIND}"))
        else:
            first[obj.ref] = i + 1
    if found:
        raise pb.ProblemsError(found)
    return out


def loads(text: str, source: str = "<input>") -> list[Resource]:
    """Resources from (multi-document) YAML text; a syntax error names ``source``, line and column."""
    return parse_documents(yamlio.load_all(text, source), source)


def load_file(path: str | os.PathLike[str]) -> list[Resource]:
    """Resources of one YAML file. :class:`FileNotFoundError`/:class:`OSError` pass through."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return loads(text, os.fspath(path))


def load_files(paths: Sequence[str | os.PathLike[str]]) -> list[Resource]:
    """Resources of several files, in order; problems of all files together."""
    out: list[Resource] = []
    found: list[pb.Problem] = []
    for path in paths:
        try:
            out.extend(load_file(path))
        except pb.ProblemsError as exc:
            found.extend(exc.problems)
    if found:
        raise pb.ProblemsError(found)
    return out


# --- writing ----------------------------------------------------------------------------------------

def to_dict(resource: Resource) -> dict[str, Any]:
    """The stored form: ``apiVersion``, ``kind``, ``metadata``, ``spec`` (defaults filled in)."""
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": meta.encode_metadata(resource.metadata),
        "spec": schema.encode(resource.spec),
    }


def dumps(resources: Iterable[Resource]) -> str:
    """Multi-document YAML (``---`` before each document), as ``kubectl get -o yaml`` of each."""
    return yamlio.dump_all([to_dict(r) for r in resources])


def check_schema(resource: Resource) -> list[pb.Problem]:
    """Schema problems of an object built in code (not read from YAML): enum, pattern, range, required."""
    try:
        parse_object(to_dict(resource), where=f"{resource.KIND}/{resource.name}")
    except pb.ProblemsError as exc:
        return list(exc.problems)
    return []
