"""Meridio's watch filters (``api/nsp/v1/filter.go``), on :mod:`meridio.api.model` values.

The rules, for every kind: a ``None`` filter matches any object that exists (a ``None`` object never
matches); an empty filter name is a wildcard, otherwise the names must be equal; a ``None`` parent in
the filter (trench, conduit, stream) is a wildcard, otherwise the object's parent must match it by the
same rules, recursively (an object without that parent does not match).

Targets (``TargetFilter``): the status must be equal unless the filter's status is ``ANY``; the type
must **always** be equal; the stream follows the rules above.
"""
from __future__ import annotations

from meridio.api import model

__all__ = [
    "trench_matches", "conduit_matches", "stream_matches", "flow_matches", "vip_matches",
    "attractor_matches", "gateway_matches", "target_matches",
]


def _name_matches(wanted: str, name: str) -> bool:
    return wanted == "" or wanted == name


def trench_matches(f: model.Trench | None, t: model.Trench | None) -> bool:
    if t is None:
        return False
    return f is None or _name_matches(f.name, t.name)


def _trench_parent(f: model.Trench | None, t: model.Trench | None) -> bool:
    return f is None or trench_matches(f, t)


def conduit_matches(f: model.Conduit | None, c: model.Conduit | None) -> bool:
    if c is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, c.name) and _trench_parent(f.trench, c.trench)


def stream_matches(f: model.Stream | None, s: model.Stream | None) -> bool:
    if s is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, s.name) and (f.conduit is None or conduit_matches(f.conduit, s.conduit))


def flow_matches(f: model.Flow | None, fl: model.Flow | None) -> bool:
    if fl is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, fl.name) and (f.stream is None or stream_matches(f.stream, fl.stream))


def vip_matches(f: model.Vip | None, v: model.Vip | None) -> bool:
    if v is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, v.name) and _trench_parent(f.trench, v.trench)


def attractor_matches(f: model.Attractor | None, a: model.Attractor | None) -> bool:
    if a is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, a.name) and _trench_parent(f.trench, a.trench)


def gateway_matches(f: model.Gateway | None, g: model.Gateway | None) -> bool:
    if g is None:
        return False
    if f is None:
        return True
    return _name_matches(f.name, g.name) and _trench_parent(f.trench, g.trench)


def target_matches(f: model.Target | None, t: model.Target | None) -> bool:
    if t is None:
        return False
    if f is None:
        return True
    status = f.status == model.TargetStatus.ANY or f.status == t.status
    stream = f.stream is None or stream_matches(f.stream, t.stream)
    return status and f.type == t.type and stream
