"""Component settings from flags and ``<PREFIX>_*`` environment variables, as Meridio's envconfig.

A component declares its settings once, as a frozen dataclass whose fields use :func:`setting`::

    @dataclass(frozen=True)
    class NspSettings:
        port: int = setting(7778, "gRPC port of the ConfigurationManager and TargetRegistry")
        entry_timeout: float = setting(60.0, "keepalive expiry of registered targets", duration=True)

Each field is reachable as flag ``--entry-timeout`` and as variable ``NSP_ENTRY_TIMEOUT``; a flag wins
over the variable, the variable over the default. Durations take Go syntax (``60s``, ``500ms``) and are
held in seconds. A bad value raises :class:`SettingsError` naming the flag and variable.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from meridio.common.bounds import quote
from meridio.common.durations import DurationError, parse_duration

__all__ = ["setting", "SettingsError", "add_arguments", "from_namespace", "parse", "parse_bool", "describe"]

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def setting(default: Any, help: str, *, duration: bool = False, choices: tuple[str, ...] | None = None,
            env: str | None = None) -> Any:
    """Declare one setting: its default, one line of help, and how to parse it."""
    meta = {"help": help, "duration": duration, "choices": choices, "env": env}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_bool(raw: str) -> bool:
    """A boolean setting's text: ``1 true yes on`` / ``0 false no off`` or empty (any case); ``ValueError``
    otherwise."""
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {quote(raw)}")


def _env_name(prefix: str, f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("env") or prefix + f.name.upper()


def _flag(f: dataclasses.Field[Any]) -> str:
    return "--" + f.name.replace("_", "-")


def _convert(f: dataclasses.Field[Any], raw: str, where: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if f.metadata.get("duration"):
            return parse_duration(raw)
        if kind == "bool":
            return parse_bool(raw)
        if kind == "int":
            return int(raw, 0)
        if kind == "float":
            return float(raw)
        if kind.startswith("list") or kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        value = raw
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value
    except (ValueError, DurationError) as exc:
        raise SettingsError(f"{where}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str) -> None:
    """Add one flag per setting of ``cls`` to ``parser`` (values stay strings until :func:`from_namespace`)."""
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        shown = ",".join(default) if isinstance(default, (list, tuple)) else default
        parser.add_argument(_flag(f), dest=f.name, default=None, metavar=f.name.upper(),
                            help=f"{f.metadata.get('help', '')} (env {_env_name(prefix, f)}, default {shown!r})")


def from_namespace(cls: type[T], ns: argparse.Namespace, prefix: str,
                   environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from parsed flags, then the environment, then defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag_value = getattr(ns, f.name, None)
        env_name = _env_name(prefix, f)
        if flag_value is not None:
            values[f.name] = _convert(f, flag_value, _flag(f))
        elif env_name in env:
            values[f.name] = _convert(f, env[env_name], env_name)
    return cls(**values)


def parse(cls: type[T], prefix: str, argv: list[str] | None = None,
          environ: Mapping[str, str] | None = None) -> T:
    """Parse ``argv`` and the environment into ``cls`` (for tests and small entry points)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls, prefix)
    return from_namespace(cls, parser.parse_args(argv or []), prefix, environ)


def describe(obj: Any) -> dict[str, Any]:
    """The settings as a plain dict (for a startup log line)."""
    return dataclasses.asdict(obj)
