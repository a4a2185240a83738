"""The trench ConfigMap (``meridio-configuration-<trench>``), both directions.

:func:`render` is the operator's writer (``pkg/controllers/trench/configmap.go``): the ConfigMap
``data`` of one trench from the resources, with the operator's conversions (``any`` ports become
``0-65535``, hold-time whole seconds, BFD timers milliseconds and only when ``switch`` is true,
gateway ``ip-family`` from the address, streams without conduit / flows without stream / VIPs
without address left out, ``max-targets`` 100 when unset, lists sorted by name).

:func:`parse` (and :func:`loads`, :func:`load_file`) is the NSP's reader: strict (see
:mod:`meridio.api.configformat`, an unknown key or field, a wrong type or a value breaking a
Meridio rule rejects the whole update with :class:`ConfigMapError` naming key and field), then the
nsp.v1 conversion (``converter.go``): objects of other trenches are dropped, streams of unknown
conduits and flows of unknown streams are dropped, VIP/gateway names that resolve to nothing are
silently left out, ``bfdSpec`` is set only when ``bfd`` is true. Objects nest like nsp.v1.

Deliberate additions to Meridio's reader (all reject input Meridio would pass on to components):
semantic checks of the values (ports, prefixes, protocols, byte matches, addresses, max-targets),
duplicate names, unknown top-level keys, and completeness, so that a truncated or half-written file is
never applied as "fewer objects": all seven keys present, each holding its document (an ``items``
list, ``items: []`` for none), every item with its identifying fields (name, and trench, conduit,
stream or address where the kind has one), the text ending with a line break, and (when the reader
knows its trench) the ``trench`` key naming it. An empty file is an error, not an empty configuration.
Conveniences for hand-written files: a missing
``max-targets`` means 100 (what the operator writes for an unset value), a missing gateway
``ip-family`` is derived from the address and a missing ``protocol`` means ``bgp``; values may be
YAML text (as in a real ConfigMap) or plain nested YAML.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from meridio.api import checks, model, resources, yamlio
from meridio.api import problems as pb
from meridio.api.configformat import (  # re-exported: the public surface of the ConfigMap codec
    DEFAULT_MAX_TARGETS,
    KEYS,
    AttractorItem,
    BgpAuthItem,
    ConduitItem,
    ConfigData,
    ConfigMapError,
    FlowItem,
    GatewayItem,
    PortNatItem,
    StreamItem,
    TrenchItem,
    VipItem,
    decode_data,
    encode_data,
)

__all__ = [
    "KEYS", "ConfigMapError", "parse", "loads", "load_file", "convert", "render", "render_manifest", "config_data",
    "configmap_name", "decode_data", "encode_data", "ConfigData", "DEFAULT_MAX_TARGETS",
    "TrenchItem", "ConduitItem", "PortNatItem", "StreamItem", "FlowItem", "VipItem", "AttractorItem",
    "GatewayItem", "BgpAuthItem",
]


def _problem(where: str, message: str) -> pb.Problem:
    return pb.Problem("", "", where, message)


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

def parse(data: Mapping[str, Any], *, trench: str | None = None) -> model.Configuration:
    """The nsp.v1 configuration of a ConfigMap ``data`` mapping; :class:`ConfigMapError` if rejected.

    ``trench``: the trench the reader serves; a ``trench`` key naming another one is rejected.
    """
    if not isinstance(data, Mapping):
        raise ConfigMapError([_problem("data", pb.invalid(data, "must be a mapping of the seven keys"))])
    config = convert(decode_data(data))
    if trench is not None and config.trench is not None and config.trench.name != trench:
        raise ConfigMapError([_problem("trench: name", pb.invalid(
            config.trench.name, f"this reader serves trench {pb.render_value(trench)}"))])
    return config


def loads(text: str, source: str = "<config>", *, trench: str | None = None) -> model.Configuration:
    """Parse YAML text holding a whole ``ConfigMap`` manifest or just its ``data`` mapping.

    Text that does not end with a line break is rejected: a write cut off mid-line can still be
    valid YAML (a shorter name, a missing digit) and must not be applied.
    """
    if text and not text.endswith("\n"):
        raise ConfigMapError([_problem(source, "does not end with a line break: a cut-off or half-written "
                                       "file is not applied (write it elsewhere and rename it over this one)")])
    return parse(_data_of(text, source), trench=trench)


def load_file(path: str | os.PathLike[str], *, trench: str | None = None) -> model.Configuration:
    """The NSP's file config source: :func:`loads` of the file; a missing/unreadable file is an error."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigMapError([_problem(os.fspath(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    return loads(text, os.fspath(path), trench=trench)


def _data_of(text: str, source: str) -> Mapping[str, Any]:
    try:
        docs = yamlio.load_all(text, source)
    except yamlio.YamlError as exc:
        raise ConfigMapError(exc.problems) from None
    if not docs:
        raise ConfigMapError([_problem(source, pb.required(
            "the file is empty: a configuration without objects still names its trench and lists "
            '"items: []" under the six other keys'))])
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


# --- the operator's writer --------------------------------------------------------------------------

def configmap_name(trench: str) -> str:
    return f"meridio-configuration-{trench}"


def _of_trench(objs: Iterable[resources.Resource], trench: str, namespace: str, kind: type[Any]) -> list[Any]:
    found = [o for o in objs if isinstance(o, kind) and o.namespace == namespace and o.trench == trench]
    return sorted(found, key=lambda o: o.name)


def _ports(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(checks.ANY_PORTS if p == "any" else p for p in values)


def _bfd_item(bfd: resources.BfdSpec) -> dict[str, Any]:
    if not bfd.switch:
        return {"bfd": False}
    return {"bfd": True, "min_rx": checks.round_duration(bfd.min_rx, 1_000_000),
            "min_tx": checks.round_duration(bfd.min_tx, 1_000_000), "multiplier": bfd.multiplier or 0}


def _gateway_item(g: resources.Gateway, trench: str) -> GatewayItem:
    s = g.spec
    fields: dict[str, Any] = {}
    if s.protocol == "bgp" and s.bgp is not None:
        b = s.bgp
        fields = {"remote_asn": b.remote_asn or 0, "local_asn": b.local_asn or 0, "remote_port": b.remote_port or 0,
                  "local_port": b.local_port or 0, "hold_time": checks.round_duration(b.hold_time, 1_000_000_000),
                  "bgp_auth": BgpAuthItem(b.auth.key_name, b.auth.key_source) if b.auth is not None else None,
                  **_bfd_item(b.bfd)}
    elif s.protocol == "static" and s.static is not None:
        fields = _bfd_item(s.static.bfd)
    return GatewayItem(name=g.name, address=s.address, ip_family=checks.ip_family_of(s.address),
                       protocol=s.protocol, trench=trench, **fields)


def config_data(objs: Iterable[resources.Resource], trench: str, namespace: str = "default") -> ConfigData:
    """The :class:`ConfigData` the operator writes for ``trench`` (see the module docstring)."""
    objs = list(objs)
    if not any(isinstance(o, resources.Trench) and o.name == trench and o.namespace == namespace for o in objs):
        raise ConfigMapError([_problem("", f'trench "{trench}" not found in namespace "{namespace}"')])

    def of(kind: type[Any]) -> list[Any]:
        return _of_trench(objs, trench, namespace, kind)

    return ConfigData(
        trench=TrenchItem(trench),
        conduits=tuple(ConduitItem(c.name, trench, tuple(
            PortNatItem(n.port, n.target_port, n.vips, n.protocol) for n in c.spec.destination_port_nats))
            for c in of(resources.Conduit)),
        streams=tuple(StreamItem(s.name, s.spec.conduit, DEFAULT_MAX_TARGETS if s.spec.max_targets is None
                                 else s.spec.max_targets) for s in of(resources.Stream) if s.spec.conduit),
        flows=tuple(FlowItem(f.name, f.spec.source_subnets, _ports(f.spec.destination_ports),
                             _ports(f.spec.source_ports), f.spec.protocols, f.spec.vips, f.spec.priority,
                             f.spec.stream, f.spec.byte_matches) for f in of(resources.Flow) if f.spec.stream),
        vips=tuple(VipItem(v.name, v.spec.address, trench) for v in of(resources.Vip) if v.spec.address),
        attractors=tuple(AttractorItem(a.name, a.spec.vips, a.spec.gateways, trench) for a in of(resources.Attractor)),
        gateways=tuple(_gateway_item(g, trench) for g in of(resources.Gateway)),
    )


def render(objs: Iterable[resources.Resource], trench: str, namespace: str = "default") -> dict[str, str]:
    """The ConfigMap ``data`` of ``trench`` (seven YAML documents); :class:`ConfigMapError` if no such trench."""
    return encode_data(config_data(objs, trench, namespace))


def render_manifest(objs: Iterable[resources.Resource], trench: str, namespace: str = "default") -> str:
    """The whole ``ConfigMap`` object ``meridio-configuration-<trench>`` as YAML text."""
    manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": configmap_name(trench), "namespace": namespace},
                "data": render(objs, trench, namespace)}
    return yamlio.dump(manifest)
