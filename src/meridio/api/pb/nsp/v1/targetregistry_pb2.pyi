from google.protobuf import empty_pb2 as _empty_pb2
from meridio.api.pb.nsp.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    def __init__(self, targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("ips", "context", "status", "type", "stream")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENABLED: _ClassVar[Target.Status]
        DISABLED: _ClassVar[Target.Status]
        ANY: _ClassVar[Target.Status]
    ENABLED: Target.Status
    DISABLED: Target.Status
    ANY: Target.Status
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEFAULT: _ClassVar[Target.Type]
        FRONTEND: _ClassVar[Target.Type]
        LOADBALANCER: _ClassVar[Target.Type]
    DEFAULT: Target.Type
    FRONTEND: Target.Type
    LOADBALANCER: Target.Type
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IPS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    ips: _containers.RepeatedScalarFieldContainer[str]
    context: _containers.ScalarMap[str, str]
    status: Target.Status
    type: Target.Type
    stream: _model_pb2.Stream
    def __init__(self, ips: _Optional[_Iterable[str]] = ..., context: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[Target.Status, str]] = ..., type: _Optional[_Union[Target.Type, str]] = ..., stream: _Optional[_Union[_model_pb2.Stream, _Mapping]] = ...) -> None: ...
