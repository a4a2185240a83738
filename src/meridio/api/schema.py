"""A small structural-schema codec: plain YAML/JSON values <-> frozen dataclasses, both directions.

The dataclass *is* the schema: each field's type (``str``, ``int``, ``bool``, ``X | None``,
``tuple[X, ...]``, a nested dataclass) and its :func:`key` metadata (YAML key, required, enum,
pattern, bounds, when to omit on output) drive both :func:`decode` and :func:`encode`, so the two
directions cannot drift apart. Decoding is strict like the Kubernetes API server with a CRD schema:
unknown fields, wrong types, values outside an enum/pattern/range and missing required fields are all
reported (never just the first), with the API server's wording. ``null`` counts as absent, and
defaults apply to absent fields (also inside objects, but only when the object itself is present).

The same reflection gives the Kubernetes structural OpenAPI v3 schema of a dataclass (:func:`openapi`),
which the CRDs carry: the API server and :func:`decode` enforce the same rules.

Used by :mod:`meridio.api.resources` (the CRDs) and :mod:`meridio.api.configmap` (the NSP ConfigMap).
"""
from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from meridio.api import problems as pb

__all__ = ["Key", "key", "Issue", "decode", "encode", "openapi", "T"]

T = TypeVar("T")

OMIT_AUTO = "auto"     # required: never; Optional: when None; str/list/object: when empty
OMIT_NEVER = "never"   # always written (Go yaml without omitempty)
OMIT_EMPTY = "empty"   # Go ``omitempty``: "", 0, False, [], None and empty objects are left out


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    """For a string, or for each item of a list of strings."""
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    omit: str = OMIT_AUTO


def key(name: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """Declare a dataclass field with its YAML key and schema rules (see :class:`Key`)."""
    meta = {"schema": Key(name, **kw)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults")
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Issue:
    """A schema violation at ``path`` (dotted, with ``[i]`` for list items)."""

    path: str
    message: str


# --- reflection helpers ---------------------------------------------------------------------------

@functools.cache
def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Key, Any], ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        k = f.metadata.get("schema")
        if isinstance(k, Key):
            out.append((f, k, hints[f.name]))
    return tuple(out)


def _optional_inner(tp: Any) -> Any | None:
    """``X`` if ``tp`` is ``X | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _list_item(tp: Any) -> Any | None:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- decoding ---------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean"}


def _type_issue(path: str, value: Any, type_name: str) -> Issue:
    where = f"{path} in body " if path else ""
    return Issue(path, pb.invalid(value, f"{where}must be of type {type_name}"))


def decode(cls: type[T], value: Any, path: str = "") -> tuple[T | None, list[Issue]]:
    """Decode ``value`` (a mapping) into ``cls``; return the object (None if unusable) and all issues."""
    issues: list[Issue] = []
    obj = _decode_object(cls, value, path, issues)
    return (obj if not issues else None), issues


def _decode_object(cls: type, value: Any, path: str, issues: list[Issue]) -> Any:
    if not isinstance(value, Mapping):
        issues.append(_type_issue(path, value, "object"))
        return None
    known = {k.name for _, k, _ in _fields(cls)}
    for name in value:
        if name not in known:
            issues.append(Issue(_join(path, str(name)), pb.unknown_field(_join(path, str(name)))))
    kwargs: dict[str, Any] = {}
    for f, k, tp in _fields(cls):
        sub = _join(path, k.name)
        raw = value.get(k.name)
        if raw is None:
            if k.required:
                issues.append(Issue(sub, pb.required()))
            continue  # the dataclass default applies
        kwargs[f.name] = _decode_value(tp, k, raw, sub, issues)
    try:
        return cls(**kwargs)
    except TypeError:  # a required field was missing: already reported
        return None


def _decode_value(tp: Any, k: Key, raw: Any, path: str, issues: list[Issue]) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        tp = inner
    item = _list_item(tp)
    if item is not None:
        if not isinstance(raw, list):
            issues.append(_type_issue(path, raw, "array"))
            return ()
        return tuple(_decode_scalar_or_object(item, k, v, f"{path}[{i}]", issues) for i, v in enumerate(raw))
    return _decode_scalar_or_object(tp, k, raw, path, issues)


def _decode_scalar_or_object(tp: Any, k: Key, raw: Any, path: str, issues: list[Issue]) -> Any:
    if dataclasses.is_dataclass(tp):
        return _decode_object(typing.cast(type, tp), raw, path, issues)
    if tp is bool:
        ok = isinstance(raw, bool)
    elif tp is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    elif tp is str:
        ok = isinstance(raw, str)
    else:  # pragma: no cover - a schema bug, not user input
        raise TypeError(f"unsupported schema type {tp!r} at {path}")
    if not ok:
        issues.append(_type_issue(path, raw, _TYPE_NAMES[tp]))
        return raw
    _check_rules(k, raw, path, issues)
    return raw


def _check_rules(k: Key, raw: Any, path: str, issues: list[Issue]) -> None:
    if k.enum is not None and raw not in k.enum:
        issues.append(Issue(path, pb.unsupported(raw, k.enum)))
    if isinstance(raw, str):
        if k.max_length is not None and len(raw) > k.max_length:
            issues.append(Issue(path, pb.too_long(k.max_length)))
        if k.pattern is not None and not _go_match(k.pattern, raw):
            issues.append(Issue(path, pb.invalid(raw, f"{path} in body should match '{k.pattern}'")))
    if isinstance(raw, int) and not isinstance(raw, bool):
        if k.minimum is not None and raw < k.minimum:
            issues.append(Issue(path, pb.invalid(raw, f"{path} in body should be greater than or equal to {k.minimum}")))
        if k.maximum is not None and raw > k.maximum:
            issues.append(Issue(path, pb.invalid(raw, f"{path} in body should be less than or equal to {k.maximum}")))


def _go_match(pattern: str, text: str) -> bool:
    """Go's ``regexp.MatchString``: ``$`` means the very end (Python's also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, text) is not None


# --- encoding ---------------------------------------------------------------------------------------

def encode(obj: Any) -> dict[str, Any]:
    """The plain mapping for ``obj`` (keys in field order), omitting what :class:`Key.omit` says."""
    out: dict[str, Any] = {}
    cls: type = type(obj)
    for f, k, tp in _fields(cls):
        value = getattr(obj, f.name)
        if _omitted(k, tp, value):
            continue
        out[k.name] = _encode_value(value)
    return out


def _encode_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(value)
    if isinstance(value, tuple):
        return [_encode_value(v) for v in value]
    return value


def _is_empty(value: Any) -> bool:
    if value is None or value == "" or value == ():
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return not encode(value)
    return False


def _omitted(k: Key, tp: Any, value: Any) -> bool:
    if k.omit == OMIT_NEVER:
        return False
    if k.omit == OMIT_EMPTY:
        return _is_empty(value) or value == 0 or value is False
    if k.required:
        return False
    if _optional_inner(tp) is not None:
        return value is None
    return _is_empty(value)



# --- the structural OpenAPI v3 schema -----------------------------------------------------------------

def openapi(cls: type) -> dict[str, Any]:
    """The Kubernetes structural schema of ``cls``: types, required fields, enums, patterns, bounds and
    the defaults of optional scalar fields (so the API server stores what :func:`decode` would read).
    ``null`` is left out as absent by the API server too (fields are not ``nullable``)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f, k, tp in _fields(cls):
        prop = _openapi_value(tp, k)
        default = f.default
        if (not k.required and isinstance(default, (str, int)) and not isinstance(default, bool)
                and default not in ("", 0)):
            prop["default"] = default
        properties[k.name] = prop
        if k.required:
            required.append(k.name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


def _openapi_value(tp: Any, k: Key) -> dict[str, Any]:
    inner = _optional_inner(tp)
    if inner is not None:
        tp = inner
    item = _list_item(tp)
    if item is not None:
        return {"type": "array", "items": _openapi_scalar_or_object(item, k)}
    return _openapi_scalar_or_object(tp, k)


def _openapi_scalar_or_object(tp: Any, k: Key) -> dict[str, Any]:
    if dataclasses.is_dataclass(tp):
        return openapi(typing.cast(type, tp))
    out: dict[str, Any] = {"type": _TYPE_NAMES[tp]}
    if k.enum is not None:
        out["enum"] = list(k.enum)
    if tp is str:
        if k.pattern is not None:
            out["pattern"] = k.pattern
        if k.max_length is not None:
            out["maxLength"] = k.max_length
    if tp is int:
        if k.minimum is not None:
            out["minimum"] = k.minimum
        if k.maximum is not None:
            out["maximum"] = k.maximum
    return out
