"""Meridio's webhook rules per kind, as pure functions returning :class:`~meridio.api.problems.Problem` lists.

``spec_problems(obj, world)`` holds the single-object rules plus the cross-object ones that need the
other objects of the trench (``world``: every object as it will be once the apply goes through), and
``update_problems(old, new)`` the immutability rules. Messages are Meridio's (``api/v1/*_webhook.go``,
v1.2.8), field paths the real ones (Meridio has a few odd paths such as ``metadata.spec.type``; ours
point at the field). Entry point: :mod:`meridio.api.validation`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from meridio.api import checks, resources, schema
from meridio.api import problems as pb
from meridio.common import log as logmod

__all__ = ["World", "in_trench", "spec_problems", "update_problems", "label_problems", "vip_conflicts"]

World = Mapping[tuple[str, str, str], resources.Resource]
"""Objects by ``(kind, namespace, name)``."""


def _p(obj: resources.Resource, field: str, message: str) -> pb.Problem:
    return pb.Problem(obj.KIND, obj.name, field, message)


def in_trench(world: World, kind: str, obj: resources.Resource) -> list[resources.Resource]:
    """Objects of ``kind`` with the same ``trench`` label in the same namespace, sorted by name."""
    found = [o for (k, ns, _), o in world.items()
             if k == kind and ns == obj.namespace and o.metadata.label("trench") == obj.metadata.label("trench")]
    return sorted(found, key=lambda o: o.name)


def _empty(value: object) -> bool:
    return value is None or not schema.encode(value)


# --- Trench, Conduit, Stream, Vip -------------------------------------------------------------------

def _trench(obj: resources.Trench, world: World, log: logmod.Logger) -> list[pb.Problem]:
    if obj.spec.ip_family == "":
        return [_p(obj, "spec.ip-family", pb.invalid("", "cannot be empty"))]
    return []


def _conduit(obj: resources.Conduit, world: World, log: logmod.Logger) -> list[pb.Problem]:
    out = []
    if obj.spec.type == "":
        out.append(_p(obj, "spec.type", pb.invalid("", "cannot be empty")))
    nats = [checks.NatEntry(n.port, n.target_port, n.vips, n.protocol) for n in obj.spec.destination_port_nats]
    if (msg := checks.check_port_nats(nats)) is not None:
        value = [schema.encode(n) for n in obj.spec.destination_port_nats]
        out.append(_p(obj, "spec.destination-port-nats", pb.invalid(value, f"destination port nats: {msg}")))
    return out


def _stream(obj: resources.Stream, world: World, log: logmod.Logger) -> list[pb.Problem]:
    mt = obj.spec.max_targets
    if mt is not None and not 1 <= mt <= 10000:
        return [_p(obj, "spec.max-targets",
                   pb.invalid(mt, "must be greater than or equal to 1 and less than or equal to 10000"))]
    return []


def _vip(obj: resources.Vip, world: World, log: logmod.Logger) -> list[pb.Problem]:
    if (msg := checks.check_prefix(obj.spec.address)) is not None:
        return [_p(obj, "spec.address", pb.invalid(obj.spec.address, msg))]
    return []


# --- Flow -------------------------------------------------------------------------------------------

def _flow(obj: resources.Flow, world: World, log: logmod.Logger) -> list[pb.Problem]:
    s = obj.spec
    out = []
    if (msg := checks.check_protocols(s.protocols)) is not None:
        out.append(_p(obj, "spec.protocols", pb.invalid(s.protocols, msg)))
    for field, label, values, check in (
            ("source-subnets", "source subnet", s.source_subnets, checks.check_subnets),
            ("source-ports", "source port", s.source_ports, checks.check_ports),
            ("destination-ports", "destination port", s.destination_ports, checks.check_ports)):
        if (bad := check(values)) is not None:
            out.append(_p(obj, f"spec.{field}", pb.invalid(values[bad[0]], f"{label}{bad[1]}")))
    if s.priority < 0:
        out.append(_p(obj, "spec.priority", pb.invalid(s.priority, "priority must be larger than 0")))
    out.extend(vip_conflicts(obj, world, log))
    if (bad := checks.check_byte_matches(s.byte_matches)) is not None:
        out.append(_p(obj, "spec.byte-matches", pb.invalid(s.byte_matches[bad[0]], f"byte matches{bad[1]}")))
    return out


def vip_conflicts(obj: resources.Flow, world: World, log: logmod.Logger = logmod.null) -> list[pb.Problem]:
    """A VIP may not be shared by flows of streams in different conduits.

    Only a "hard" conflict (both streams exist and their conduits differ) is an error; a conflict
    involving a stream that does not exist (yet) is only logged, as Meridio does.
    """
    streams = {st.name: st for st in in_trench(world, "Stream", obj)}
    mine = streams.get(obj.spec.stream)
    current = mine.spec.conduit if isinstance(mine, resources.Stream) else ""
    wanted = set(obj.spec.vips)
    hard: list[str] = []
    soft: list[str] = []
    for other in in_trench(world, "Flow", obj):
        if other.name == obj.name or not isinstance(other, resources.Flow):
            continue
        theirs = streams.get(other.spec.stream)
        if isinstance(theirs, resources.Stream) and theirs.spec.conduit == current:
            continue
        shared = [v for v in other.spec.vips if v in wanted]
        if not shared:
            continue
        desc = (f'stream "{other.spec.stream}" (conduit "{theirs.spec.conduit}")'
                if isinstance(theirs, resources.Stream) else f'stream "{other.spec.stream}" (not found)')
        details = f'flow "{other.name}" ({desc}) conflicts on vip(s) [{", ".join(shared)}]'
        (hard if current != "" and theirs is not None else soft).append(details)
    my_desc = f'"{obj.spec.stream}" (conduit "{current}")' if current else f'"{obj.spec.stream}" (not found)'
    if soft and not hard:
        log.info("possible vip conflict detected", event="vipConflictPossible", flow=obj.name,
                 stream=my_desc, details="; ".join(soft))
    if not hard:
        return []
    message = (f"a vip cannot be shared between 2 conduits in this version: "
               f'incoming flow "{obj.name}" ({my_desc}), {", ".join(hard)}')
    return [_p(obj, "spec.vips", pb.invalid(obj.spec.vips, message))]


# --- Attractor --------------------------------------------------------------------------------------

def _interface(obj: resources.Attractor) -> list[pb.Problem]:
    i = obj.spec.interface
    out = []
    if i.type == "nsm-vlan":
        for field, value in (("ipv4-prefix", i.ipv4_prefix), ("ipv6-prefix", i.ipv6_prefix)):
            if (msg := checks.check_prefix_or_range(value)) is not None:
                out.append(_p(obj, f"spec.interface.{field}", pb.invalid(value, msg)))
        if i.nsm_vlan.base_interface == "" or i.nsm_vlan.vlan_id is None:
            out.append(_p(obj, "spec.interface.nsm-vlan", pb.invalid(
                schema.encode(i.nsm_vlan), "missing mandatory parameter base-interface/vlan-id")))
    elif i.type == "network-attachment":
        for field, value in (("ipv4-prefix", i.ipv4_prefix), ("ipv6-prefix", i.ipv6_prefix)):
            if value != "":
                out.append(_p(obj, f"spec.interface.{field}", pb.forbidden("not supported for type")))
        if len(i.network_attachments) != 1:
            out.append(_p(obj, "spec.interface.network-attachments", pb.invalid(
                [schema.encode(n) for n in i.network_attachments], "single Network Attachment item required")))
        for n, nad in enumerate(i.network_attachments):
            for field, value in (("name", nad.name), ("namespace", nad.namespace)):
                if value == "":
                    out.append(_p(obj, f"spec.interface.network-attachments[{n}].{field}",
                                  pb.required(f"missing mandatory Network Attachment parameter {field}")))
    else:
        out.append(_p(obj, "spec.interface.type", pb.invalid(i.type, "not a supported interface")))
    return out


def _attractor(obj: resources.Attractor, world: World, log: logmod.Logger) -> list[pb.Problem]:
    out = _interface(obj)
    composites = obj.spec.composites
    if len(composites) > 1:
        out.append(_p(obj, "spec.composites", pb.invalid(
            composites, "only one composite per attractor is supported in the current version")))
    others = [a for a in in_trench(world, "Attractor", obj) if a.name != obj.name]
    if any(v in obj.spec.vips for a in others for v in getattr(a.spec, "vips", ())):
        out.append(_p(obj, "spec.vips", pb.invalid(
            obj.spec.vips, "a vip cannot be shared between 2 attractors in this version")))
    if any(c in composites for a in others for c in getattr(a.spec, "composites", ())):
        out.append(_p(obj, "spec.composites", pb.invalid(
            composites, "a conduit cannot be shared between 2 attractors in this version")))
    return out


# --- Gateway ----------------------------------------------------------------------------------------

def _bfd(obj: resources.Gateway, proto: str, bfd: resources.BfdSpec) -> list[pb.Problem]:
    base = f"spec.{proto}.bfd"
    if bfd.switch is None:
        return [_p(obj, f"{base}.switch", pb.invalid(None, "switch must be specified"))]
    if not bfd.switch:
        return []
    out = []
    if bfd.min_rx == "":
        out.append(_p(obj, f"{base}.min-rx", pb.invalid("", "min-rx must be specified")))
    if bfd.min_tx == "":
        out.append(_p(obj, f"{base}.min-tx", pb.invalid("", "min-tx must be specified")))
    if bfd.multiplier is None:
        out.append(_p(obj, f"{base}.multiplier", pb.invalid(None, "multiplier must be specified")))
    for field, value in (("min-rx", bfd.min_rx), ("min-tx", bfd.min_tx)):
        if (msg := checks.check_duration_at_least(value, 0)) is not None:
            out.append(_p(obj, f"{base}.{field}", pb.invalid(value, msg)))
    return out


def _gateway(obj: resources.Gateway, world: World, log: logmod.Logger) -> list[pb.Problem]:
    s = obj.spec
    out = []
    if checks.parse_ip(s.address) is None:
        out.append(_p(obj, "spec.address", pb.invalid(s.address, "invalid IP format")))
    if s.protocol == "bgp":
        bgp = s.bgp or resources.BgpSpec(remote_port=None, local_port=None)
        for field, value in (("remote-asn", bgp.remote_asn), ("local-asn", bgp.local_asn),
                             ("remote-port", bgp.remote_port), ("local-port", bgp.local_port)):
            if value is None:
                out.append(_p(obj, f"spec.bgp.{field}", pb.invalid(None, "mandatory parameter is missing")))
        if not _empty(bgp.bfd):
            out.extend(_bfd(obj, "bgp", bgp.bfd))
        if (msg := checks.check_duration_at_least(bgp.hold_time, 3000)) is not None:
            out.append(_p(obj, "spec.bgp.hold-time", pb.invalid(bgp.hold_time, msg)))
        if not _empty(s.static):
            out.append(_p(obj, "spec.static", pb.invalid(schema.encode(s.static), "must be empty when protocol is bgp")))
    elif s.protocol == "static":
        if not _empty(s.bgp):
            out.append(_p(obj, "spec.bgp", pb.invalid(schema.encode(s.bgp), "must be empty when protocol is static")))
        if s.static is not None and not _empty(s.static.bfd):
            out.extend(_bfd(obj, "static", s.static.bfd))
    return out


# --- dispatch ---------------------------------------------------------------------------------------

Rule = Callable[..., list[pb.Problem]]
_SPEC_RULES: dict[str, Rule] = {
    "Trench": _trench, "Conduit": _conduit, "Stream": _stream, "Flow": _flow, "Vip": _vip,
    "Attractor": _attractor, "Gateway": _gateway,
}


def spec_problems(obj: resources.Resource, world: World, log: logmod.Logger = logmod.null) -> list[pb.Problem]:
    rule = _SPEC_RULES.get(obj.KIND)
    return rule(obj, world, log) if rule is not None else []


# --- updates ----------------------------------------------------------------------------------------

def _forbidden(obj: resources.Resource, field: str, message: str) -> pb.Problem:
    return _p(obj, field, pb.forbidden(message))


def _attractor_update(old: resources.Attractor, new: resources.Attractor) -> list[pb.Problem]:
    o, n = old.spec.interface, new.spec.interface
    out = []
    if n.type != o.type.lower():
        out.append(_forbidden(new, "spec.interface.type", "update on interface type is forbidden"))
    elif n.type == "nsm-vlan":
        if n.nsm_vlan.vlan_id != o.nsm_vlan.vlan_id:
            out.append(_forbidden(new, "spec.interface.nsm-vlan.vlan-id", "update on vlan id is forbidden"))
        if n.nsm_vlan.base_interface != o.nsm_vlan.base_interface:
            out.append(_forbidden(new, "spec.interface.nsm-vlan.base-interface", "update on base interface is forbidden"))
    elif n.type == "network-attachment":
        out.extend(_nad_update(new, o.network_attachments, n.network_attachments))
    for field, before, after in (("ipv4-prefix", o.ipv4_prefix, n.ipv4_prefix), ("ipv6-prefix", o.ipv6_prefix, n.ipv6_prefix)):
        if before != after:
            out.append(_forbidden(new, f"spec.interface.{field}", "update on prefix is forbidden"))
    return out


def _nad_update(new: resources.Attractor, before: Sequence[resources.NetworkAttachmentSpec],
                after: Sequence[resources.NetworkAttachmentSpec]) -> list[pb.Problem]:
    path = "spec.interface.network-attachments"
    if len(before) != len(after):
        return [_forbidden(new, path, "update on network-attachments items forbidden")]
    out = []
    for i, (o, n) in enumerate(zip(before, after)):  # order matters
        for field, a, b in (("namespace", o.namespace, n.namespace), ("name", o.name, n.name),
                            ("interface", o.interface, n.interface)):
            if a != b:
                out.append(_forbidden(new, f"{path}[{i}].{field}", f"update on {field} forbidden"))
    return out


_LABEL_MESSAGES = {"Attractor": "update on attractor label trench is forbidden",
                   "Vip": "update on vip label trench is forbidden"}


def update_problems(old: resources.Resource, new: resources.Resource) -> list[pb.Problem]:
    """The immutability rules of ``new`` replacing ``old`` (same kind, namespace and name)."""
    out = []
    if new.KIND in resources.MERIDIO_KINDS and new.KIND != "Trench" and \
            old.metadata.label("trench") != new.metadata.label("trench"):
        message = _LABEL_MESSAGES.get(new.KIND, "update on trench label is forbidden")
        out.append(_forbidden(new, "metadata.labels.trench", message))
    if isinstance(old, resources.Trench) and isinstance(new, resources.Trench) and \
            old.spec.ip_family != new.spec.ip_family:
        out.append(_forbidden(new, "spec.ip-family", "updating on ip-family is forbidden"))
    if isinstance(old, resources.Stream) and isinstance(new, resources.Stream) and \
            old.spec.max_targets != new.spec.max_targets:
        out.append(_forbidden(new, "spec.max-targets", "update on max-targets is forbidden"))
    if isinstance(old, resources.Attractor) and isinstance(new, resources.Attractor):
        out.extend(_attractor_update(old, new))
    return out


def label_problems(obj: resources.Resource, world: World, *, creating: bool) -> list[pb.Problem]:
    """The trench label must be present and, on create, name a Trench in the same namespace."""
    if obj.KIND not in resources.MERIDIO_KINDS or obj.KIND == "Trench":
        return []
    trench = obj.metadata.label("trench")
    if trench is None:
        return [_p(obj, "metadata.labels", pb.invalid(obj.metadata.labels_dict, f"{obj.KIND} must have a trench label"))]
    if creating and ("Trench", obj.namespace, trench) not in world:
        return [_p(obj, "metadata.labels.trench", f"unable to find the trench in label, {obj.KIND} cannot be created")]
    return []
