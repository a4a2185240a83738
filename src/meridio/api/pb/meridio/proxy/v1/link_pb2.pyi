from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("target_id", "credential", "interface_name")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    credential: str
    interface_name: str
    def __init__(self, target_id: _Optional[str] = ..., credential: _Optional[str] = ..., interface_name: _Optional[str] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("target_id", "credential")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    credential: str
    def __init__(self, target_id: _Optional[str] = ..., credential: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("target_id",)
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    def __init__(self, target_id: _Optional[str] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("target_id", "interface_name", "addresses", "gateways", "vips", "mtu", "conduit", "trench", "node")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    interface_name: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    gateways: _containers.RepeatedScalarFieldContainer[str]
    vips: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    conduit: str
    trench: str
    node: str
    def __init__(self, target_id: _Optional[str] = ..., interface_name: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., gateways: _Optional[_Iterable[str]] = ..., vips: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ..., conduit: _Optional[str] = ..., trench: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...
