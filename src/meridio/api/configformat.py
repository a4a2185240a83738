"""The trench ConfigMap format (Meridio ``pkg/configuration/reader/model.go``): the one table.

Seven keys, ``trench``, ``conduits``, ``streams``, ``flows``, ``vips``, ``attractors``, ``gateways``;
each value is a YAML document; lists sit under ``items:``. The item dataclasses below (field order =
Meridio's YAML order, ``omitempty`` where Meridio has it) drive both directions through
:mod:`meridio.api.schema`: :func:`decode_data` (strict: unknown keys and fields, wrong types) and
:func:`encode_data`. :func:`decode_data` also applies Meridio's value rules (the same functions the
resource validator uses, from :mod:`meridio.api.checks`) and rejects duplicate names.
Entry points for users of the format: :mod:`meridio.api.configmap`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meridio.api import checks, schema, yamlio
from meridio.api import problems as pb
from meridio.api.schema import OMIT_EMPTY, OMIT_NEVER
from meridio.api.schema import key as yaml_key

__all__ = [
    "KEYS", "ConfigMapError", "decode_data", "encode_data",
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
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class PortNatItem:
    port: int = yaml_key("port", 0, minimum=0, maximum=U16, omit=OMIT_NEVER)
    target_port: int = yaml_key("target-port", 0, minimum=0, maximum=U16, omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    protocol: str = yaml_key("protocol", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class ConduitItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", required=True, omit=OMIT_NEVER)
    destination_port_nats: tuple[PortNatItem, ...] = yaml_key("destination-port-nats", (), omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class StreamItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    conduit: str = yaml_key("conduit", "", required=True, omit=OMIT_NEVER)
    max_targets: int | None = yaml_key("max-targets", None, minimum=0, maximum=U32)


@dataclasses.dataclass(frozen=True)
class FlowItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    source_subnets: tuple[str, ...] = yaml_key("source-subnets", (), omit=OMIT_NEVER)
    destination_port_ranges: tuple[str, ...] = yaml_key("destination-port-ranges", (), omit=OMIT_NEVER)
    source_port_ranges: tuple[str, ...] = yaml_key("source-port-ranges", (), omit=OMIT_NEVER)
    protocols: tuple[str, ...] = yaml_key("protocols", (), omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    priority: int = yaml_key("priority", 0, minimum=I32_MIN, maximum=I32_MAX, omit=OMIT_NEVER)
    stream: str = yaml_key("stream", "", required=True, omit=OMIT_NEVER)
    byte_matches: tuple[str, ...] = yaml_key("byte-matches", (), omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class VipItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    address: str = yaml_key("address", "", required=True, omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class AttractorItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    vips: tuple[str, ...] = yaml_key("vips", (), omit=OMIT_NEVER)
    gateways: tuple[str, ...] = yaml_key("gateways", (), omit=OMIT_NEVER)
    trench: str = yaml_key("trench", "", required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class BgpAuthItem:
    key: str = yaml_key("key", "", omit=OMIT_NEVER)
    source: str = yaml_key("source", "", omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class GatewayItem:
    name: str = yaml_key("name", "", required=True, omit=OMIT_NEVER)
    address: str = yaml_key("address", "", required=True, omit=OMIT_NEVER)
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
    trench: str = yaml_key("trench", "", required=True, omit=OMIT_NEVER)
    bgp_auth: BgpAuthItem | None = yaml_key("bgp-auth", None, omit=OMIT_EMPTY)


@dataclasses.dataclass(frozen=True)
class _ConduitList:
    items: tuple[ConduitItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _StreamList:
    items: tuple[StreamItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _FlowList:
    items: tuple[FlowItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _VipList:
    items: tuple[VipItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _AttractorList:
    items: tuple[AttractorItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


@dataclasses.dataclass(frozen=True)
class _GatewayList:
    items: tuple[GatewayItem, ...] = yaml_key("items", (), required=True, omit=OMIT_NEVER)


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


_COMPLETE = ("every one of the seven keys must hold its document: a cut-off or half-written file "
             "is not applied (write the file elsewhere and rename it over this one)")


def _load_value(name: str, value: Any, found: list[pb.Problem]) -> Any:
    """A data value is YAML text (a structured mapping is accepted too, for hand-written files).

    A key that is missing or holds nothing is an error, never "no objects": a truncated file loses its
    last keys, and applying it would remove what they held. ``items: []`` says "none".
    """
    if isinstance(value, str):
        try:
            value = yamlio.load_one(value, name)
        except yamlio.YamlError as exc:
            found.extend(exc.problems)
            return None
    elif value is not None and not isinstance(value, Mapping):
        found.append(_problem(name, pb.invalid(value, "must be a string holding a YAML document")))
        return None
    if value is None:
        found.append(_problem(name, pb.required(_COMPLETE if name == "trench" else f'{_COMPLETE}; '
                                                f'"items: []" means no {name}')))
    return value


def decode_data(data: Mapping[str, Any]) -> ConfigData:
    """Strictly decode the seven keys into :class:`ConfigData` (no conversion, no dropping).

    Every key must be present and hold a complete document (``name`` for the trench, an ``items`` list
    for the others, each item with its identifying fields): what a truncated file lacks.
    """
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
    if trench is not None and not trench.name:
        found.append(_problem("trench: name", pb.required()))
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


def encode_data(cfg: ConfigData) -> dict[str, str]:
    """The ConfigMap ``data`` for ``cfg``: one YAML document per key, in :data:`KEYS` order."""
    data = {"trench": yamlio.dump(schema.encode(cfg.trench or TrenchItem()))}
    for name, cls in LIST_TYPES.items():
        data[name] = yamlio.dump(schema.encode(cls(items=getattr(cfg, name))))
    return data
