from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamResponse(_message.Message):
    __slots__ = ("streamStatus",)
    STREAMSTATUS_FIELD_NUMBER: _ClassVar[int]
    streamStatus: _containers.RepeatedCompositeFieldContainer[StreamStatus]
    def __init__(self, streamStatus: _Optional[_Iterable[_Union[StreamStatus, _Mapping]]] = ...) -> None: ...

class StreamStatus(_message.Message):
    __slots__ = ("status", "stream")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPEN: _ClassVar[StreamStatus.Status]
        PENDING: _ClassVar[StreamStatus.Status]
        UNAVAILABLE: _ClassVar[StreamStatus.Status]
        UNDEFINED: _ClassVar[StreamStatus.Status]
    OPEN: StreamStatus.Status
    PENDING: StreamStatus.Status
    UNAVAILABLE: StreamStatus.Status
    UNDEFINED: StreamStatus.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    status: StreamStatus.Status
    stream: Stream
    def __init__(self, status: _Optional[_Union[StreamStatus.Status, str]] = ..., stream: _Optional[_Union[Stream, _Mapping]] = ...) -> None: ...

class Trench(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Conduit(_message.Message):
    __slots__ = ("name", "trench")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRENCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    trench: Trench
    def __init__(self, name: _Optional[str] = ..., trench: _Optional[_Union[Trench, _Mapping]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("name", "conduit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONDUIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    conduit: Conduit
    def __init__(self, name: _Optional[str] = ..., conduit: _Optional[_Union[Conduit, _Mapping]] = ...) -> None: ...
