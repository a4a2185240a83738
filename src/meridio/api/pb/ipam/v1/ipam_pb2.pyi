from google.protobuf import empty_pb2 as _empty_pb2
from meridio.api.pb.nsp.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IPFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IPV4: _ClassVar[IPFamily]
    IPV6: _ClassVar[IPFamily]
IPV4: IPFamily
IPV6: IPFamily

class Prefix(_message.Message):
    __slots__ = ("address", "prefixLength")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIXLENGTH_FIELD_NUMBER: _ClassVar[int]
    address: str
    prefixLength: int
    def __init__(self, address: _Optional[str] = ..., prefixLength: _Optional[int] = ...) -> None: ...

class Subnet(_message.Message):
    __slots__ = ("conduit", "node", "ipFamily")
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IPFAMILY_FIELD_NUMBER: _ClassVar[int]
    conduit: _model_pb2.Conduit
    node: str
    ipFamily: IPFamily
    def __init__(self, conduit: _Optional[_Union[_model_pb2.Conduit, _Mapping]] = ..., node: _Optional[str] = ..., ipFamily: _Optional[_Union[IPFamily, str]] = ...) -> None: ...

class Child(_message.Message):
    __slots__ = ("name", "subnet")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    name: str
    subnet: Subnet
    def __init__(self, name: _Optional[str] = ..., subnet: _Optional[_Union[Subnet, _Mapping]] = ...) -> None: ...
