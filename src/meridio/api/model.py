"""The nsp.v1 configuration and target model as frozen dataclasses, with protobuf conversion.

This is what travels inside every component: the NSP builds it from the ConfigMap-format file,
serves it as ``nsp.v1`` messages, and every watcher converts the messages it receives back into it
(``*_from_pb``) at the edge. Objects nest exactly as the nsp.v1 messages do (a Flow carries its Stream,
which carries its Conduit, which carries its Trench), so a watcher needs no lookups.
Field units: ``hold_time`` seconds, BFD timers milliseconds.
"""
from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from meridio.api.pb.nsp.v1 import model_pb2, targetregistry_pb2

__all__ = [
    "Trench", "Vip", "PortNat", "Conduit", "Stream", "Flow", "BfdSpec", "BgpAuth", "Gateway", "Attractor",
    "Configuration", "TargetStatus", "TargetType", "Target",
    "trench_to_pb", "trench_from_pb", "vip_to_pb", "vip_from_pb", "conduit_to_pb", "conduit_from_pb",
    "stream_to_pb", "stream_from_pb", "flow_to_pb", "flow_from_pb", "gateway_to_pb", "gateway_from_pb",
    "attractor_to_pb", "attractor_from_pb", "target_to_pb", "target_from_pb",
]


@dataclasses.dataclass(frozen=True)
class Trench:
    name: str


@dataclasses.dataclass(frozen=True)
class Vip:
    name: str
    address: str
    """A prefix: ``20.0.0.1/32``, ``2000::/126``."""
    trench: Trench | None = None


@dataclasses.dataclass(frozen=True)
class PortNat:
    port: int
    target_port: int
    protocol: str
    vips: tuple[Vip, ...] = ()

    @property
    def nat_name(self) -> str:
        """Meridio's ``GetNatName()``: ``<port>-<targetPort>-<protocol>``."""
        return f"{self.port}-{self.target_port}-{self.protocol}"


@dataclasses.dataclass(frozen=True)
class Conduit:
    name: str
    trench: Trench | None = None
    destination_port_nats: tuple[PortNat, ...] = ()


@dataclasses.dataclass(frozen=True)
class Stream:
    name: str
    conduit: Conduit | None = None
    max_targets: int = 0


@dataclasses.dataclass(frozen=True)
class Flow:
    name: str
    stream: Stream | None = None
    priority: int = 0
    protocols: tuple[str, ...] = ()
    source_subnets: tuple[str, ...] = ()
    source_port_ranges: tuple[str, ...] = ()
    destination_port_ranges: tuple[str, ...] = ()
    vips: tuple[Vip, ...] = ()
    byte_matches: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BfdSpec:
    min_tx: int
    """Milliseconds."""
    min_rx: int
    """Milliseconds."""
    multiplier: int


@dataclasses.dataclass(frozen=True)
class BgpAuth:
    key_name: str
    key_source: str


@dataclasses.dataclass(frozen=True)
class Gateway:
    name: str
    address: str
    ip_family: str = ""
    protocol: str = "bgp"
    remote_asn: int = 0
    local_asn: int = 0
    remote_port: int = 0
    local_port: int = 0
    hold_time: int = 0
    """Seconds; 0 = not set."""
    bfd: bool = False
    bfd_spec: BfdSpec | None = None
    trench: Trench | None = None
    bgp_auth: BgpAuth | None = None


@dataclasses.dataclass(frozen=True)
class Attractor:
    name: str
    trench: Trench | None = None
    vips: tuple[Vip, ...] = ()
    gateways: tuple[Gateway, ...] = ()


@dataclasses.dataclass(frozen=True)
class Configuration:
    """The whole configuration of one trench, as the NSP serves it."""

    trench: Trench | None = None
    conduits: tuple[Conduit, ...] = ()
    streams: tuple[Stream, ...] = ()
    flows: tuple[Flow, ...] = ()
    vips: tuple[Vip, ...] = ()
    attractors: tuple[Attractor, ...] = ()
    gateways: tuple[Gateway, ...] = ()


class TargetStatus(enum.IntEnum):
    ENABLED = 0
    DISABLED = 1
    ANY = 2


class TargetType(enum.IntEnum):
    DEFAULT = 0
    FRONTEND = 1
    LOADBALANCER = 2
    """Ours (appended to nsp.v1): an LB replica announcing itself to its conduit's proxies."""


@dataclasses.dataclass(frozen=True)
class Target:
    ips: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()
    """Sorted key/value pairs (a frozen mapping); use :attr:`context_dict` or :attr:`identifier`."""
    status: TargetStatus = TargetStatus.ENABLED
    type: TargetType = TargetType.DEFAULT
    stream: Stream | None = None

    @staticmethod
    def make(ips: Iterable[str] = (), context: Mapping[str, str] | None = None,
             status: TargetStatus = TargetStatus.ENABLED, type: TargetType = TargetType.DEFAULT,
             stream: Stream | None = None) -> Target:
        return Target(tuple(ips), tuple(sorted((context or {}).items())), TargetStatus(status),
                      TargetType(type), stream)

    @property
    def context_dict(self) -> dict[str, str]:
        return dict(self.context)

    @property
    def identifier(self) -> str | None:
        return self.context_dict.get("identifier")


# --- protobuf conversion -------------------------------------------------------------------------

def trench_to_pb(t: Trench | None) -> model_pb2.Trench | None:
    return None if t is None else model_pb2.Trench(name=t.name)


def trench_from_pb(m: model_pb2.Trench, present: bool = True) -> Trench | None:
    return Trench(m.name) if present else None


def vip_to_pb(v: Vip) -> model_pb2.Vip:
    return model_pb2.Vip(name=v.name, address=v.address, trench=trench_to_pb(v.trench))


def vip_from_pb(m: model_pb2.Vip) -> Vip:
    return Vip(m.name, m.address, trench_from_pb(m.trench, m.HasField("trench")))


def conduit_to_pb(c: Conduit | None) -> model_pb2.Conduit | None:
    if c is None:
        return None
    return model_pb2.Conduit(
        name=c.name, trench=trench_to_pb(c.trench),
        destinationPortNats=[
            model_pb2.Conduit.PortNat(port=n.port, targetPort=n.target_port, protocol=n.protocol,
                                      vips=[vip_to_pb(v) for v in n.vips])
            for n in c.destination_port_nats
        ],
    )


def conduit_from_pb(m: model_pb2.Conduit, present: bool = True) -> Conduit | None:
    if not present:
        return None
    nats = tuple(PortNat(n.port, n.targetPort, n.protocol, tuple(vip_from_pb(v) for v in n.vips))
                 for n in m.destinationPortNats)
    return Conduit(m.name, trench_from_pb(m.trench, m.HasField("trench")), nats)


def stream_to_pb(s: Stream | None) -> model_pb2.Stream | None:
    if s is None:
        return None
    return model_pb2.Stream(name=s.name, conduit=conduit_to_pb(s.conduit), maxTargets=s.max_targets)


def stream_from_pb(m: model_pb2.Stream, present: bool = True) -> Stream | None:
    if not present:
        return None
    return Stream(m.name, conduit_from_pb(m.conduit, m.HasField("conduit")), m.maxTargets)


def flow_to_pb(f: Flow) -> model_pb2.Flow:
    return model_pb2.Flow(
        name=f.name, sourceSubnets=f.source_subnets, destinationPortRanges=f.destination_port_ranges,
        sourcePortRanges=f.source_port_ranges, protocols=f.protocols, priority=f.priority,
        stream=stream_to_pb(f.stream), vips=[vip_to_pb(v) for v in f.vips], byteMatches=f.byte_matches,
    )


def flow_from_pb(m: model_pb2.Flow) -> Flow:
    return Flow(
        name=m.name, stream=stream_from_pb(m.stream, m.HasField("stream")), priority=m.priority,
        protocols=tuple(m.protocols), source_subnets=tuple(m.sourceSubnets),
        source_port_ranges=tuple(m.sourcePortRanges), destination_port_ranges=tuple(m.destinationPortRanges),
        vips=tuple(vip_from_pb(v) for v in m.vips), byte_matches=tuple(m.byteMatches),
    )


def gateway_to_pb(g: Gateway) -> model_pb2.Gateway:
    m = model_pb2.Gateway(
        name=g.name, address=g.address, ipFamily=g.ip_family, protocol=g.protocol, remoteASN=g.remote_asn,
        localASN=g.local_asn, remotePort=g.remote_port, localPort=g.local_port, holdTime=g.hold_time,
        bfd=g.bfd, trench=trench_to_pb(g.trench),
    )
    if g.bfd_spec is not None:
        m.bfdSpec.CopyFrom(model_pb2.Gateway.BfdSpec(MinTx=g.bfd_spec.min_tx, MinRx=g.bfd_spec.min_rx,
                                                     Multiplier=g.bfd_spec.multiplier))
    if g.bgp_auth is not None:
        m.bgpAuth.CopyFrom(model_pb2.Gateway.BgpAuth(keyName=g.bgp_auth.key_name,
                                                     keySource=g.bgp_auth.key_source))
    return m


def gateway_from_pb(m: model_pb2.Gateway) -> Gateway:
    bfd_spec = (BfdSpec(m.bfdSpec.MinTx, m.bfdSpec.MinRx, m.bfdSpec.Multiplier)
                if m.HasField("bfdSpec") else None)
    auth = BgpAuth(m.bgpAuth.keyName, m.bgpAuth.keySource) if m.HasField("bgpAuth") else None
    return Gateway(
        name=m.name, address=m.address, ip_family=m.ipFamily, protocol=m.protocol, remote_asn=m.remoteASN,
        local_asn=m.localASN, remote_port=m.remotePort, local_port=m.localPort, hold_time=m.holdTime,
        bfd=m.bfd, bfd_spec=bfd_spec, trench=trench_from_pb(m.trench, m.HasField("trench")), bgp_auth=auth,
    )


def attractor_to_pb(a: Attractor) -> model_pb2.Attractor:
    return model_pb2.Attractor(name=a.name, trench=trench_to_pb(a.trench), vips=[vip_to_pb(v) for v in a.vips],
                               gateways=[gateway_to_pb(g) for g in a.gateways])


def attractor_from_pb(m: model_pb2.Attractor) -> Attractor:
    return Attractor(m.name, trench_from_pb(m.trench, m.HasField("trench")),
                     tuple(vip_from_pb(v) for v in m.vips), tuple(gateway_from_pb(g) for g in m.gateways))


def target_to_pb(t: Target) -> targetregistry_pb2.Target:
    return targetregistry_pb2.Target(ips=t.ips, context=dict(t.context), status=typing.cast(Any, int(t.status)),
                                     type=typing.cast(Any, int(t.type)), stream=stream_to_pb(t.stream))


def target_from_pb(m: targetregistry_pb2.Target) -> Target:
    return Target.make(ips=tuple(m.ips), context=dict(m.context), status=TargetStatus(m.status),
                       type=TargetType(m.type), stream=stream_from_pb(m.stream, m.HasField("stream")))
