"""The runtime daemon's API: operations, their requests and replies, and the snapshot ``status`` returns.

Every operation is an :class:`Op`; its request is a frozen dataclass naming its op and its reply type
(``Apply(text, source)`` → :class:`Lines`), so the daemon dispatches through one table and the CLI gets a
typed value back. The CLI is a client of this API only (:mod:`meridio.runtime.local.client` carries it).

Wire form (``DIR/runtime.sock``): the client sends one JSON object on one line, the request's fields plus
``"op"``; the daemon answers with zero or more ``{"progress": "..."}`` lines and one final
``{"ok": true, "result": {...}}`` (the reply's fields) or ``{"ok": false, "error": "..."}``. Field names
on the wire are the Python names unless a field's ``metadata["json"]`` says otherwise (the snapshot keeps
the camelCase keys ``meridio status -o json`` has always printed).
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from meridio.api.tapaclient import StreamStatus

__all__ = [
    "REQUESTS",
    "Apply",
    "Container",
    "Delete",
    "Down",
    "Lines",
    "Op",
    "Ping",
    "Pod",
    "Pong",
    "Process",
    "ProtocolError",
    "Ready",
    "RegisteredTarget",
    "Removed",
    "Request",
    "Resources",
    "Rotate",
    "Rotated",
    "ResourceList",
    "Router",
    "Scale",
    "Scaled",
    "Session",
    "Snapshot",
    "Status",
    "StreamStatus",
    "Up",
    "Wait",
    "decode",
    "decode_request",
    "encode",
]

R = TypeVar("R")
T = TypeVar("T")


class ProtocolError(ValueError):
    """A message that is not a valid request or reply (the daemon answers ``bad request: ...``)."""


class Op(enum.Enum):
    PING = "ping"
    UP = "up"
    WAIT = "wait"
    APPLY = "apply"
    DELETE = "delete"
    SCALE = "scale"
    STATUS = "status"
    RESOURCES = "resources"
    DOWN = "down"
    ROTATE = "rotate"


def _json(name: str) -> Any:
    return dataclasses.field(metadata={"json": name})


# --------------------------------------------------------------------------- replies


@dataclasses.dataclass(frozen=True)
class Pong:
    pid: int
    environment: str


@dataclasses.dataclass(frozen=True)
class Ready:
    """Everything is ready (``ready`` is always true: a timeout is an error naming what is missing)."""

    ready: bool
    seconds: float


@dataclasses.dataclass(frozen=True)
class Lines:
    """What an apply or delete did, one line per object (``Trench/trench-a created``)."""

    lines: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Scaled:
    message: str


@dataclasses.dataclass(frozen=True)
class Rotated:
    """How many certificates were issued anew (0 when the environment runs without mutual TLS)."""

    certificates: int


@dataclasses.dataclass(frozen=True)
class ResourceList:
    """The environment's resources in their document form (what ``kubectl get -o json`` shows)."""

    items: tuple[dict[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Removed:
    namespaces: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Process:
    name: str
    pod: str
    component: str
    pid: int | None
    state: str
    restarts: int
    exit_code: int | None
    since: float
    log_path: str
    failed: bool = False
    """It keeps exiting soon after its start (still retried, at the capped delay)."""
    last_error: str = ""
    """The last line it wrote before its last exit."""


@dataclasses.dataclass(frozen=True)
class Container:
    component: str
    state: str
    restarts: int
    failed: bool = False
    last_error: str = ""


@dataclasses.dataclass(frozen=True)
class Pod:
    name: str
    kind: str
    node: str
    trench: str
    netns: str
    state: str
    """``Running``, ``NotReady``, ``Failed`` (a process keeps exiting soon after its start; the reason
    quotes its last output line), ``Pending`` or ``Blocked``."""
    reason: str = ""
    containers: tuple[Container, ...] = ()
    attractor: str = ""
    """The attractor of an FE+LB pod (empty for other kinds)."""
    conduit: str = ""
    """The conduit of a proxy pod (empty for other kinds)."""
    network: str = ""
    """The external segment an FE+LB pod is attached to (empty: none, or not started)."""
    addresses: tuple[str, ...] = ()
    """The FE's addresses on that segment, without prefix length: the neighbours the gateways peer with."""


@dataclasses.dataclass(frozen=True)
class Session:
    """A gateway router's BGP session with one frontend."""

    name: str
    neighbor: str
    state: str
    info: str
    bfd: str


@dataclasses.dataclass(frozen=True)
class Router:
    name: str
    trench: str
    network: str
    sessions: tuple[Session, ...]
    routes: dict[str, tuple[str, ...]]
    """VIP routes BIRD installed in the router's kernel: destination → next hops."""
    families: tuple[int, ...] = ()
    """The IP families (4, 6) the router peers over with BGP; empty: the router runs no BGP."""


@dataclasses.dataclass(frozen=True)
class RegisteredTarget:
    """A target as the trench's NSP registry has it."""

    stream: str
    conduit: str
    identifier: str
    status: str
    ips: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything ``meridio status -o json`` prints; ``None`` where a component did not answer."""

    environment: str
    prefix: str
    state_dir: str = _json("stateDir")
    processes: tuple[Process, ...] = ()
    pods: tuple[Pod, ...] = ()
    routers: tuple[Router, ...] = ()
    targets: dict[str, tuple[StreamStatus, ...] | None] = dataclasses.field(default_factory=dict)
    """Per target pod, the streams its TAPA reports (``None``: the TAPA does not answer)."""
    streams: dict[str, tuple[RegisteredTarget, ...] | None] = dataclasses.field(default_factory=dict)
    """Per trench, the targets its NSP has registered (``None``: the NSP does not answer)."""
    problems: tuple[str, ...] = ()
    opening: tuple[str, ...] = ()
    not_ready: tuple[str, ...] = dataclasses.field(default=(), metadata={"json": "notReady"})


# --------------------------------------------------------------------------- requests


class Request(Generic[R]):
    """A request of operation ``op``; the daemon answers it with a ``reply``."""

    op: ClassVar[Op]
    reply: ClassVar[type[Any]]


@dataclasses.dataclass(frozen=True)
class Ping(Request[Pong]):
    op = Op.PING
    reply = Pong


@dataclasses.dataclass(frozen=True)
class Up(Request[Ready]):
    """Build or repair the environment, then wait until it is ready."""

    op = Op.UP
    reply = Ready
    timeout: float = 180.0


@dataclasses.dataclass(frozen=True)
class Wait(Request[Ready]):
    op = Op.WAIT
    reply = Ready
    timeout: float = 180.0


@dataclasses.dataclass(frozen=True)
class Apply(Request[Lines]):
    op = Op.APPLY
    reply = Lines
    text: str
    source: str = "<input>"


@dataclasses.dataclass(frozen=True)
class Delete(Request[Lines]):
    """Delete the objects of ``text`` or the ``refs`` (kind, namespace, name)."""

    op = Op.DELETE
    reply = Lines
    text: str | None = None
    source: str = "<input>"
    refs: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Scale(Request[Scaled]):
    op = Op.SCALE
    reply = Scaled
    deployment: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class Status(Request[Snapshot]):
    op = Op.STATUS
    reply = Snapshot


@dataclasses.dataclass(frozen=True)
class Resources(Request[ResourceList]):
    op = Op.RESOURCES
    reply = ResourceList


@dataclasses.dataclass(frozen=True)
class Down(Request[Removed]):
    """Tear everything down; the daemon exits after its reply."""

    op = Op.DOWN
    reply = Removed


@dataclasses.dataclass(frozen=True)
class Rotate(Request[Rotated]):
    """Issue every certificate of the environment anew now (not waiting for half-life)."""

    op = Op.ROTATE
    reply = Rotated


REQUESTS: Mapping[Op, type[Request[Any]]] = {r.op: r for r in (Ping, Up, Wait, Apply, Delete, Scale, Status,
                                                                 Resources, Down, Rotate)}


# --------------------------------------------------------------------------- codec


def encode(value: Any) -> Any:
    """A dataclass (request, reply, snapshot) as JSON-ready data; a request carries its ``op``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.metadata.get("json", f.name): encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Request):
            out = {"op": value.op.value, **out}
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode_request(data: Any) -> Request[Any]:
    if not isinstance(data, dict):
        raise ProtocolError("a request is one JSON object")
    try:
        cls = REQUESTS[Op(data.get("op"))]
    except ValueError:
        raise ProtocolError(f"unknown op {data.get('op')!r}") from None
    return decode(cls, {k: v for k, v in data.items() if k != "op"})


def decode(cls: type[T], data: Any) -> T:
    """``data`` (parsed JSON) as an instance of the dataclass ``cls``; :class:`ProtocolError` if it is not one."""
    return typing.cast(T, _decode(cls, data, cls.__name__))


def _decode(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            key = f.metadata.get("json", f.name)
            if key in data:
                kwargs[f.name] = _decode(hints[f.name], data[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}: {key} is required")
        return typing.cast(Any, tp)(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _decode(arg, data, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: unexpected {type(data).__name__}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise ProtocolError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise ProtocolError(f"{where}: expected {len(args)} items")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
    if origin is dict:
        key_t, value_t = typing.get_args(tp)
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected an object")
        return {_decode(key_t, k, where): _decode(value_t, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ProtocolError(f"{where}: expected a number")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ProtocolError(f"{where}: expected {tp.__name__}")
        return data
    if tp is type(None):
        if data is not None:
            raise ProtocolError(f"{where}: expected null")
        return None
    raise ProtocolError(f"{where}: cannot decode {tp!r}")
