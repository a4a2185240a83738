"""Stream references: what a target application names in Open/Close/Watch, parsed at the edge.

Open and Close carry an ``ambassador.v1.Stream``; :func:`ref_from_pb` turns it into a :class:`StreamRef`
or raises :class:`InvalidRequest` with Meridio's messages (``"conduit cannot be nil"``, ...) and, where
Meridio says nothing, a clear one naming the field and the rule. Watch carries a filter in the same
message where an empty name or a missing parent is a wildcard (:class:`Filter`).
"""
from __future__ import annotations

import dataclasses
import re

from meridio.api import model
from meridio.api.pb.ambassador.v1 import tap_pb2
from meridio.common import bounds

__all__ = ["StreamRef", "ConduitRef", "InvalidRequest", "Filter", "ref_from_pb", "ref_to_pb",
           "filter_from_pb", "check_name"]

# Kubernetes object names (DNS-1123 subdomain): the names Meridio's resources can have. Also keeps the
# names safe to put into socket path and address templates.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class InvalidRequest(ValueError):
    """A request the TAPA refuses; the message names the field and the rule."""


@dataclasses.dataclass(frozen=True, order=True)
class ConduitRef:
    trench: str
    conduit: str

    def __str__(self) -> str:
        return f"{self.conduit}.{self.trench}"

    def to_model(self) -> model.Conduit:
        return model.Conduit(self.conduit, model.Trench(self.trench))


@dataclasses.dataclass(frozen=True, order=True)
class StreamRef:
    """One stream of one conduit of one trench; ordered by trench, conduit, stream."""

    trench: str
    conduit: str
    stream: str

    @property
    def full_name(self) -> str:
        """Meridio's ``FullName()``: ``stream.conduit.trench``."""
        return f"{self.stream}.{self.conduit}.{self.trench}"

    @property
    def conduit_ref(self) -> ConduitRef:
        return ConduitRef(self.trench, self.conduit)

    def to_model(self, max_targets: int = 0) -> model.Stream:
        return model.Stream(self.stream, self.conduit_ref.to_model(), max_targets)

    def __str__(self) -> str:
        return self.full_name


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid resource name, else :class:`InvalidRequest` naming ``kind``."""
    if not name:
        raise InvalidRequest(f"{kind} name cannot be empty")
    if not _NAME.match(name):
        raise InvalidRequest(f"{kind} name {bounds.quote(name)} is invalid: must be at most 253 lower case alphanumeric "
                             "characters, '-' or '.', starting and ending with an alphanumeric character")
    return name


def ref_from_pb(stream: tap_pb2.Stream | None) -> StreamRef:
    """Parse the Stream of an Open or Close request (Meridio's nil checks first, then the names)."""
    if stream is None:
        raise InvalidRequest("stream cannot be nil")
    if not stream.HasField("conduit"):
        raise InvalidRequest("conduit cannot be nil")
    if not stream.conduit.HasField("trench"):
        raise InvalidRequest("trench cannot be nil")
    return StreamRef(check_name("trench", stream.conduit.trench.name),
                     check_name("conduit", stream.conduit.name),
                     check_name("stream", stream.name))


def ref_to_pb(ref: StreamRef) -> tap_pb2.Stream:
    return tap_pb2.Stream(name=ref.stream, conduit=tap_pb2.Conduit(
        name=ref.conduit, trench=tap_pb2.Trench(name=ref.trench)))


@dataclasses.dataclass(frozen=True)
class Filter:
    """A Watch filter: ``None`` or an empty name matches everything at that level."""

    trench: str | None = None
    conduit: str | None = None
    stream: str | None = None

    def matches(self, ref: StreamRef) -> bool:
        return all(want in (None, "", have) for want, have in
                   ((self.trench, ref.trench), (self.conduit, ref.conduit), (self.stream, ref.stream)))


def filter_from_pb(stream: tap_pb2.Stream | None) -> Filter:
    """Meridio's filter rules: empty name = wildcard, missing parent = wildcard for it and above."""
    if stream is None:
        return Filter()
    conduit = stream.conduit if stream.HasField("conduit") else None
    trench = conduit.trench if conduit is not None and conduit.HasField("trench") else None
    return Filter(trench=trench.name if trench is not None else None,
                  conduit=conduit.name if conduit is not None else None,
                  stream=stream.name)
