"""Strict YAML in, stable YAML out, shared by the resource files and the ConfigMap codec.

Loading rejects duplicate mapping keys (the API server's strict decoding does too) and turns any
syntax error into one :class:`~meridio.api.problems.Problem` naming the file, line and column.
Dumping keeps key order (the order of the dataclass fields) and block style, like Go's yaml.v2.
"""
from __future__ import annotations

from typing import Any

import yaml

from meridio.api import problems as pb

__all__ = ["StrictLoader", "load_all", "load_one", "dump", "dump_all", "YamlError"]


class YamlError(pb.ProblemsError):
    """The text is not valid YAML (one problem: ``<source>:<line>:<column>: invalid YAML: ...``)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        k = loader.construct_object(key_node, deep=True)
        try:
            duplicate = k in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {k!r}", key_node.start_mark)
        seen.add(k)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _error(source: str, exc: yaml.YAMLError, line_offset: int = 0) -> YamlError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{source}:{mark.line + 1 + line_offset}:{mark.column + 1}" if mark is not None else source
    reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.reader.ReaderError):
        where = f"{source}: character {exc.position + 1}"
    return YamlError([pb.Problem("", "", where, f"invalid YAML: {reason}")])


def load_all(text: str, source: str) -> list[Any]:
    """Every non-empty document of ``text``; :class:`YamlError` on bad syntax or duplicate keys."""
    try:
        return [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise _error(source, exc) from None


def load_one(text: str, source: str) -> Any:
    """A single document (None for empty text)."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        raise _error(source, exc) from None


class _Dumper(yaml.SafeDumper):
    """Block style; lists not indented under their key (as Go's yaml.v2 writes them); a value used twice
    is written twice (no ``&id001`` anchors: kubectl users read these files)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16)


def dump_all(values: list[Any]) -> str:
    return yaml.dump_all(values, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                         width=1 << 16, explicit_start=True)
