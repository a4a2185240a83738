"""The trench ConfigMap (``meridio-configuration-<trench>``), both directions.

Format (Meridio ``pkg/configuration/reader/model.go``): seven keys, ``trench``, ``conduits``,
``streams``, ``flows``, ``vips``, ``attractors``, ``gateways``; each value is a YAML document; lists
sit under ``items:``, sorted by name. The item dataclasses below are the one table both directions
use: :func:`parse` (the NSP's reader) decodes with them, :func:`render` (the operator's writer, in
:mod:`meridio.api.configrender`) encodes with them.

:func:`parse` is strict: an unknown key or field, a wrong type or a value breaking a Meridio rule
rejects the whole update with :class:`ConfigMapError` naming the key and field. It then applies the
nsp.v1 conversion (``converter.go``): objects of other trenches are dropped, streams of unknown
conduits and flows of unknown streams are dropped, VIP/gateway names that resolve to nothing are
silently left out, ``bfdSpec`` is set only when ``bfd`` is true. Objects nest like nsp.v1.

Deliberate additions to Meridio's reader (all reject input Meridio would pass on to components):
semantic checks of the values (ports, prefixes, protocols, byte matches, addresses, max-targets),
duplicate names, unknown top-level keys. Conveniences for hand-written files: a missing
``max-targets`` means 100 (what the operator writes for an unset value), a missing gateway
``ip-family`` is derived from the address and a missing ``protocol`` means ``bgp``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping, Sequence

from meridio.api import checks, model, schema, yamlio
from meridio.api import problems as pb
from meridio.api.schema import OMIT_EMPTY, OMIT_NEVER
from meridio.api.schema import key as yaml_key

__all__ = [
    "KEYS", "ConfigMapError", "parse", "loads", "load_file", "decode_data",
    "TrenchItem", "ConduitItem", "PortNatItem", "StreamItem", "FlowItem", "VipItem", "AttractorItem",
    "GatewayItem", "BgpAuthItem", "ConfigData", "DEFAULT_MAX_TARGETS",
]

DEFAULT_MAX_TARGETS = 100
KEYS = ("trench", "conduits", "streams", "flows", "vips", "attractors", "gateways")

U16, U32, I32_MIN, I32_MAX = 65535, 4294967295, -2147483648, 2147483647


class ConfigMapError(pb.ProblemsError):
    """The ConfigMap (or file) was rejected; ``str()`` names each key/field and rule, one per line."""


# --- the table: one dataclass per item, field order = Meridio's YAML order ------------------------

@dataclasses.dataclass(frozen=True)
class TrenchItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class PortNatItem:
    port: int = yaml_key("port", 0, minimum=0, maximum=U16, omit=OMIT_NEVER)
    target_port: int = yaml_key("target-port", 0, minimum=0, maximum=U16, omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    protocol: str = yaml_key("protocol", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class ConduitItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", omit=OMIT_NEVER)
    destination_port_nats: tuple[PortNatItem, ...] = yaml_key("destination-port-nats", (), omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class StreamItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    conduit: str = yaml_key("conduit", "", omit=OMIT_NEVER)
    max_targets: int | None = yaml_key("max-targets", None, minimum=0, maximum=U32)


@dataclasses.dataclass(frozen=True)
class FlowItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    source_subnets: tuple[str, ...] = yaml_key("source-subnets", (), omit=OMIT_NEVER)
    destination_port_ranges: tuple[str, ...] = yaml_key("destination-port-ranges", (), omit=OMIT_NEVER)
    source_port_ranges: tuple[str, ...] = yaml_key("source-port-ranges", (), omit=OMIT_NEVER)
    protocols: tuple[str, ...] = yaml_key("protocols", (), omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    priority: int = yaml_key("priority", 0, minimum=I32_MIN, maximum=I32_MAX, omit=OMIT_NEVER)
    stream: str = yaml_key("stream", "", omit=OMIT_NEVER)
    byte_matches: tuple[str, ...] = yaml_key("byte-matches", (), omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class VipItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    address: str = yaml_key("address", "", omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class AttractorItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    gateways: tuple[str, ...] = yaml_key("gateways", (), omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class BgpAuthItem:
    key: str = yaml_key("key", "", omit=OMIT_NEVER)
    source: str = yaml_key("source", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class GatewayItem:
    name: str = yaml_key("name", "", omit=OMIT_NEVER)
    address: str = yaml_key("address", "", omit=OMIT_NEVER)
    remote_asn: int = yaml_key("remote-asn", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    local_asn: int = yaml_key("local-asn", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    remote_port: int = yaml_key("remote-port", 0, minimum=0, maximum=U16, omit=OMIT_EMPTY)
    local_port: int = yaml_key("local-port", 0, minimum=0, maximum=U16, omit=OMIT_EMPTY)
    ip_family: str = yaml_key("ip-family", "", omit=OMIT_NEVER)
    bfd: bool = yaml_key("bfd", False, omit=OMIT_NEVER)
    protocol: str = yaml_key("protocol", "", omit=OMIT_NEVER)
    hold_time: int = yaml_key("hold-time", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    """Seconds."""
    min_tx: int = yaml_key("min-tx", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    """Milliseconds."""
    min_rx: int = yaml_key("min-rx", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    """Milliseconds."""
    multiplier: int = yaml_key("multiplier", 0, minimum=0, maximum=U32, omit=OMIT_EMPTY)
    trench: str = yaml_key("trench", "", omit=OMIT_NEVER)
    bgp_auth: BgpAuthItem | None = yaml_key("bgp-auth", None, omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class _ConduitList:
    items: tuple[ConduitItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _StreamList:
    items: tuple[StreamItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _FlowList:
    items: tuple[FlowItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _VipList:
    items: tuple[VipItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _AttractorList:
    items: tuple[AttractorItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _GatewayList:
    items: tuple[GatewayItem, ...] = yaml_key("items", (), omit=OMIT_NEVER)


LIST_TYPES: dict[str, type] = {
    "conduits": _ConduitList, "streams": _StreamList, "flows": _FlowList, "vips": _VipList,
    "attractors": _AttractorList, "gateways": _GatewayList,
}


@dataclasses.dataclass(frozen=True)
class ConfigData:
    """The decoded ConfigMap before the nsp.v1 conversion (what the operator renders)."""

    trench: TrenchItem | None = None
    conduits: tuple[ConduitItem, ...] = ()
    streams: tuple[StreamItem, ...] = ()
    flows: tuple[FlowItem, ...] = ()
    vips: tuple[VipItem, ...] = ()
    attractors: tuple[AttractorItem, ...] = ()
    gateways: tuple[GatewayItem, ...] = ()


# --- decoding the data mapping ----------------------------------------------------------------------

def _problem(where: str, message: str) -> pb.Problem:
    return pb.Problem("", "", where, message)


def _load_value(name: str, value: Any, found: list[pb.Problem]) -> Any:
    """A data value is YAML text (a structured mapping is accepted too, for hand-written files)."""
    if value is None or isinstance(value, Mapping):
        return value
    if not isinstance(value, str):
        found.append(_problem(name, pb.invalid(value, "must be a string holding a YAML document")))
        return None
    try:
        return yamlio.load_one(value, name)
    except yamlio.YamlError as exc:
        found.extend(exc.problems)
        return None


def decode_data(data: Mapping[str, Any]) -> ConfigData:
    """Strictly decode the seven keys into :class:`ConfigData` (no conversion, no dropping)."""
    found: list[pb.Problem] = []
    for name in data:
        if name not in KEYS:
            found.append(_problem(str(name), f'unknown key "{name}", expected one of {", ".join(KEYS)}'))
    trench: TrenchItem | None = None
    raw = _load_value("trench", data.get("trench"), found)
    if raw is not None:
        trench = _decode_into(TrenchItem, raw, "trench", found)
    lists: dict[str, tuple[Any, ...]] = {}
    for name, cls in LIST_TYPES.items():
        raw = _load_value(name, data.get(name), found)
        decoded = _decode_into(cls, raw, name, found) if raw is not None else None
        lists[name] = decoded.items if decoded is not None else ()
    cfg = ConfigData(trench=trench, **lists)
    found.extend(_semantic_problems(cfg))
    if found:
        raise ConfigMapError(found)
    return cfg


def _decode_into(cls: type, raw: Any, name: str, found: list[pb.Problem]) -> Any:
    obj, issues = schema.decode(cls, raw)
    found.extend(_problem(f"{name}: {i.path}" if i.path else name, i.message) for i in issues)
    return obj


# --- semantic checks (the same rules as the resource validator) -------------------------------------

def _semantic_problems(cfg: ConfigData) -> list[pb.Problem]:
    out: list[pb.Problem] = []
    for name in LIST_TYPES:
        out.extend(_duplicates(name, getattr(cfg, name)))
    for i, c in enumerate(cfg.conduits):
        out.extend(_conduit_problems(f"conduits: items[{i}]", c))
    for i, s in enumerate(cfg.streams):
        if s.max_targets is not None and not 1 <= s.max_targets <= 10000:
            out.append(_problem(f"streams: items[{i}].max-targets", pb.invalid(
                s.max_targets, "must be greater than or equal to 1 and less than or equal to 10000")))
    for i, f in enumerate(cfg.flows):
        out.extend(_flow_problems(f"flows: items[{i}]", f))
    for i, v in enumerate(cfg.vips):
        if (msg := checks.check_prefix(v.address)) is not None:
            out.append(_problem(f"vips: items[{i}].address", pb.invalid(v.address, msg)))
    for i, g in enumerate(cfg.gateways):
        out.extend(_gateway_problems(f"gateways: items[{i}]", g))
    return out


def _duplicates(name: str, items: Sequence[Any]) -> list[pb.Problem]:
    out, seen = [], set()
    for i, item in enumerate(items):
        if not item.name:
            out.append(_problem(f"{name}: items[{i}].name", pb.required()))
        elif item.name in seen:
            out.append(_problem(f"{name}: items[{i}].name", f"Duplicate value: {pb.render_value(item.name)}"))
        seen.add(item.name)
    return out


def _protocol_problems(where: str, values: Iterable[str]) -> list[pb.Problem]:
    return [_problem(f"{where}[{i}]", pb.unsupported(p, checks.PROTOCOLS))
            for i, p in enumerate(values) if p not in checks.PROTOCOLS]


def _conduit_problems(where: str, c: ConduitItem) -> list[pb.Problem]:
    out: list[pb.Problem] = []
    for j, nat in enumerate(c.destination_port_nats):
        out.extend(_protocol_problems(f"{where}.destination-port-nats[{j}].protocol", [nat.protocol]))
    entries = [checks.NatEntry(n.port, n.target_port, n.vips, n.protocol) for n in c.destination_port_nats]
    if (msg := checks.check_port_nats(entries)) is not None:
        out.append(_problem(f"{where}.destination-port-nats", f"destination port nats: {msg}"))
    return out


def _flow_problems(where: str, f: FlowItem) -> list[pb.Problem]:
    out = _protocol_problems(f"{where}.protocols", f.protocols)
    if (msg := checks.check_protocols(f.protocols)) is not None:
        out.append(_problem(f"{where}.protocols", pb.invalid(f.protocols, msg)))
    for field, label, values in (("source-subnets", "source subnet", f.source_subnets),
                                 ("source-port-ranges", "source port", f.source_port_ranges),
                                 ("destination-port-ranges", "destination port", f.destination_port_ranges),
                                 ("byte-matches", "byte matches", f.byte_matches)):
        check = {"source-subnets": checks.check_subnets, "byte-matches": checks.check_byte_matches}.get(
            field, checks.check_ports)
        if (bad := check(values)) is not None:
            index, msg = bad
            out.append(_problem(f"{where}.{field}", pb.invalid(values[index], f"{label}{msg}")))
    if f.priority < 0:
        out.append(_problem(f"{where}.priority", pb.invalid(f.priority, "priority must be larger than 0")))
    return out


def _gateway_problems(where: str, g: GatewayItem) -> list[pb.Problem]:
    out: list[pb.Problem] = []
    if checks.parse_ip(g.address) is None:
        out.append(_problem(f"{where}.address", pb.invalid(g.address, "invalid IP format")))
    if g.ip_family not in ("", "ipv4", "ipv6"):
        out.append(_problem(f"{where}.ip-family", pb.unsupported(g.ip_family, ("ipv4", "ipv6"))))
    if g.protocol not in ("", "bgp", "static"):
        out.append(_problem(f"{where}.protocol", pb.unsupported(g.protocol, ("bgp", "static"))))
    if 0 < g.hold_time < 3:
        out.append(_problem(f"{where}.hold-time", pb.invalid(g.hold_time, "invalid time duration value, must > 3s")))
    return out


# --- the nsp.v1 conversion --------------------------------------------------------------------------

def convert(cfg: ConfigData) -> model.Configuration:
    """Meridio's ``ConvertAll``: the nsp.v1 model of one trench (see the module docstring)."""
    if cfg.trench is None or not cfg.trench.name:
        return model.Configuration()
    trench = model.Trench(cfg.trench.name)
    vips = tuple(model.Vip(v.name, v.address, trench) for v in cfg.vips if v.trench == trench.name)
    vip_by_name = {v.name: v for v in vips}
    conduits = tuple(
        model.Conduit(c.name, trench, tuple(
            model.PortNat(n.port, n.target_port, n.protocol, _resolve(n.vips, vip_by_name))
            for n in c.destination_port_nats))
        for c in cfg.conduits if c.trench == trench.name)
    conduit_by_name = {c.name: c for c in conduits}
    streams = tuple(
        model.Stream(s.name, conduit_by_name[s.conduit],
                     DEFAULT_MAX_TARGETS if s.max_targets is None else s.max_targets)
        for s in cfg.streams if s.conduit in conduit_by_name)
    stream_by_name = {s.name: s for s in streams}
    flows = tuple(_flow(f, stream_by_name[f.stream], vip_by_name) for f in cfg.flows if f.stream in stream_by_name)
    gateways = tuple(_gateway(g, trench) for g in cfg.gateways if g.trench == trench.name)
    gateway_by_name = {g.name: g for g in gateways}
    attractors = tuple(
        model.Attractor(a.name, trench, _resolve(a.vips, vip_by_name), _resolve(a.gateways, gateway_by_name))
        for a in cfg.attractors if a.trench == trench.name)
    return model.Configuration(trench, conduits, streams, flows, vips, attractors, gateways)


def _resolve(names: Iterable[str], table: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(table[n] for n in names if n in table)


def _flow(f: FlowItem, stream: model.Stream, vips: Mapping[str, model.Vip]) -> model.Flow:
    return model.Flow(
        name=f.name, stream=stream, priority=f.priority, protocols=f.protocols,
        source_subnets=f.source_subnets, source_port_ranges=f.source_port_ranges,
        destination_port_ranges=f.destination_port_ranges, vips=_resolve(f.vips, vips),
        byte_matches=f.byte_matches)


def _gateway(g: GatewayItem, trench: model.Trench) -> model.Gateway:
    return model.Gateway(
        name=g.name, address=g.address, ip_family=g.ip_family or checks.ip_family_of(g.address),
        protocol=g.protocol or "bgp", remote_asn=g.remote_asn, local_asn=g.local_asn,
        remote_port=g.remote_port, local_port=g.local_port, hold_time=g.hold_time, bfd=g.bfd,
        bfd_spec=model.BfdSpec(g.min_tx, g.min_rx, g.multiplier) if g.bfd else None,
        trench=trench,
        bgp_auth=model.BgpAuth(g.bgp_auth.key, g.bgp_auth.source) if g.bgp_auth is not None else None)


# --- entry points for the NSP -----------------------------------------------------------------------

def parse(data: Mapping[str, Any]) -> model.Configuration:
    """The nsp.v1 configuration of a ConfigMap ``data`` mapping; :class:`ConfigMapError` if rejected."""
    if not isinstance(data, Mapping):
        raise ConfigMapError([_problem("data", pb.invalid(data, "must be a mapping of the seven keys"))])
    return convert(decode_data(data))


def loads(text: str, source: str = "<config>") -> model.Configuration:
    """Parse YAML text holding a whole ``ConfigMap`` manifest or just its ``data`` mapping."""
    return parse(_data_of(text, source))


def load_file(path: str | os.PathLike[str]) -> model.Configuration:
    """The NSP's file config source: :func:`loads` of the file; a missing/unreadable file is an error."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigMapError([_problem(os.fspath(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    return loads(text, os.fspath(path))


def _data_of(text: str, source: str) -> Mapping[str, Any]:
    try:
        docs = yamlio.load_all(text, source)
    except yamlio.YamlError as exc:
        raise ConfigMapError(exc.problems) from None
    if not docs:
        return {}
    if len(docs) > 1:
        raise ConfigMapError([_problem(source, "expected one YAML document, found several")])
    doc = docs[0]
    if not isinstance(doc, Mapping):
        raise ConfigMapError([_problem(source, pb.invalid(doc, "must be a ConfigMap or its data mapping"))])
    if "kind" not in doc and "apiVersion" not in doc:
        return doc
    if doc.get("kind") != "ConfigMap":
        raise ConfigMapError([_problem(f"{source}: kind", pb.unsupported(doc.get("kind"), ["ConfigMap"]))])
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        raise ConfigMapError([_problem(f"{source}: data", pb.invalid(data, "must be a mapping"))])
    return data
