from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("trench", "conduit", "node", "vni", "remote", "addresses", "mtu")
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    trench: str
    conduit: str
    node: str
    vni: int
    remote: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    def __init__(self, trench: _Optional[str] = ..., conduit: _Optional[str] = ..., node: _Optional[str] = ..., vni: _Optional[int] = ..., remote: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("interface_name", "local")
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    interface_name: str
    local: str
    def __init__(self, interface_name: _Optional[str] = ..., local: _Optional[str] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("trench", "conduit", "node")
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    trench: str
    conduit: str
    node: str
    def __init__(self, trench: _Optional[str] = ..., conduit: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class DisconnectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
