from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Trench(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Conduit(_message.Message):
    __slots__ = ("name", "trench", "destinationPortNats")
    class PortNat(_message.Message):
        __slots__ = ("port", "targetPort", "vips", "protocol")
        PORT_FIELD_NUMBER: _ClassVar[int]
        TARGETPORT_FIELD_NUMBER: _ClassVar[int]
        VIPS_FIELD_NUMBER: _ClassVar[int]
        PROTOCOL_FIELD_NUMBER: _ClassVar[int]
        port: int
        targetPort: int
        vips: _containers.RepeatedCompositeFieldContainer[Vip]
        protocol: str
        def __init__(self, port: _Optional[int] = ..., targetPort: _Optional[int] = ..., vips: _Optional[_Iterable[_Union[Vip, _Mapping]]] = ..., protocol: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONPORTNATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    trench: Trench
    destinationPortNats: _containers.RepeatedCompositeFieldContainer[Conduit.PortNat]
    def __init__(self, name: _Optional[str] = ..., trench: _Optional[_Union[Trench, _Mapping]] = ..., destinationPortNats: _Optional[_Iterable[_Union[Conduit.PortNat, _Mapping]]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("name", "conduit", "maxTargets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    MAXTARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    conduit: Conduit
    maxTargets: int
    def __init__(self, name: _Optional[str] = ..., conduit: _Optional[_Union[Conduit, _Mapping]] = ..., maxTargets: _Optional[int] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("name", "sourceSubnets", "destinationPortRanges", "sourcePortRanges", "protocols", "priority", "stream", "vips", "byteMatches")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCESUBNETS_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONPORTRANGES_FIELD_NUMBER: _ClassVar[int]
    SOURCEPORTRANGES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    BYTEMATCHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    sourceSubnets: _containers.RepeatedScalarFieldContainer[str]
    destinationPortRanges: _containers.RepeatedScalarFieldContainer[str]
    sourcePortRanges: _containers.RepeatedScalarFieldContainer[str]
    protocols: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    stream: Stream
    vips: _containers.RepeatedCompositeFieldContainer[Vip]
    byteMatches: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sourceSubnets: _Optional[_Iterable[str]] = ..., destinationPortRanges: _Optional[_Iterable[str]] = ..., sourcePortRanges: _Optional[_Iterable[str]] = ..., protocols: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., stream: _Optional[_Union[Stream, _Mapping]] = ..., vips: _Optional[_Iterable[_Union[Vip, _Mapping]]] = ..., byteMatches: _Optional[_Iterable[str]] = ...) -> None: ...

class Vip(_message.Message):
    __slots__ = ("name", "address", "trench")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    trench: Trench
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., trench: _Optional[_Union[Trench, _Mapping]] = ...) -> None: ...

class Attractor(_message.Message):
    __slots__ = ("name", "trench", "vips", "gateways")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    trench: Trench
    vips: _containers.RepeatedCompositeFieldContainer[Vip]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    def __init__(self, name: _Optional[str] = ..., trench: _Optional[_Union[Trench, _Mapping]] = ..., vips: _Optional[_Iterable[_Union[Vip, _Mapping]]] = ..., gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ...) -> None: ...

class Gateway(_message.Message):
    __slots__ = ("name", "address", "ipFamily", "protocol", "remoteASN", "localASN", "remotePort", "localPort", "holdTime", "bfd", "bfdSpec", "trench", "bgpAuth")
    class BfdSpec(_message.Message):
        __slots__ = ("MinTx", "MinRx", "Multiplier")
        MINTX_FIELD_NUMBER: _ClassVar[int]
        MINRX_FIELD_NUMBER: _ClassVar[int]
        MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
        MinTx: int
        MinRx: int
        Multiplier: int
        def __init__(self, MinTx: _Optional[int] = ..., MinRx: _Optional[int] = ..., Multiplier: _Optional[int] = ...) -> None: ...
    class BgpAuth(_message.Message):
        __slots__ = ("keyName", "keySource")
        KEYNAME_FIELD_NUMBER: _ClassVar[int]
        KEYSOURCE_FIELD_NUMBER: _ClassVar[int]
        keyName: str
        keySource: str
        def __init__(self, keyName: _Optional[str] = ..., keySource: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IPFAMILY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    REMOTEASN_FIELD_NUMBER: _ClassVar[int]
    LOCALASN_FIELD_NUMBER: _ClassVar[int]
    REMOTEPORT_FIELD_NUMBER: _ClassVar[int]
    LOCALPORT_FIELD_NUMBER: _ClassVar[int]
    HOLDTIME_FIELD_NUMBER: _ClassVar[int]
    BFD_FIELD_NUMBER: _ClassVar[int]
    BFDSPEC_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    BGPAUTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    ipFamily: str
    protocol: str
    remoteASN: int
    localASN: int
    remotePort: int
    localPort: int
    holdTime: int
    bfd: bool
    bfdSpec: Gateway.BfdSpec
    trench: Trench
    bgpAuth: Gateway.BgpAuth
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., ipFamily: _Optional[str] = ..., protocol: _Optional[str] = ..., remoteASN: _Optional[int] = ..., localASN: _Optional[int] = ..., remotePort: _Optional[int] = ..., localPort: _Optional[int] = ..., holdTime: _Optional[int] = ..., bfd: _Optional[bool] = ..., bfdSpec: _Optional[_Union[Gateway.BfdSpec, _Mapping]] = ..., trench: _Optional[_Union[Trench, _Mapping]] = ..., bgpAuth: _Optional[_Union[Gateway.BgpAuth, _Mapping]] = ...) -> None: ...

class TrenchResponse(_message.Message):
    __slots__ = ("trench",)
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    trench: Trench
    def __init__(self, trench: _Optional[_Union[Trench, _Mapping]] = ...) -> None: ...

class ConduitResponse(_message.Message):
    __slots__ = ("conduits",)
    CONDUITS_FIELD_NUMBER: _ClassVar[int]
    conduits: _containers.RepeatedCompositeFieldContainer[Conduit]
    def __init__(self, conduits: _Optional[_Iterable[_Union[Conduit, _Mapping]]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[Stream]
    def __init__(self, streams: _Optional[_Iterable[_Union[Stream, _Mapping]]] = ...) -> None: ...

class FlowResponse(_message.Message):
    __slots__ = ("flows",)
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[Flow]
    def __init__(self, flows: _Optional[_Iterable[_Union[Flow, _Mapping]]] = ...) -> None: ...

class VipResponse(_message.Message):
    __slots__ = ("vips",)
    VIPS_FIELD_NUMBER: _ClassVar[int]
    vips: _containers.RepeatedCompositeFieldContainer[Vip]
    def __init__(self, vips: _Optional[_Iterable[_Union[Vip, _Mapping]]] = ...) -> None: ...

class AttractorResponse(_message.Message):
    __slots__ = ("attractors",)
    ATTRACTORS_FIELD_NUMBER: _ClassVar[int]
    attractors: _containers.RepeatedCompositeFieldContainer[Attractor]
    def __init__(self, attractors: _Optional[_Iterable[_Union[Attractor, _Mapping]]] = ...) -> None: ...

class GatewayResponse(_message.Message):
    __slots__ = ("gateways",)
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    def __init__(self, gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ...) -> None: ...
