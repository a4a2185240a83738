"""MD5 secrets from a directory laid out like Kubernetes Secret volumes: ``<dir>/<secret-name>/<key>``.

Meridio's frontend watches the Secrets of its namespace and reconfigures BIRD when one changes; here the
secrets are files (in Kubernetes: one Secret volume per secret mounted under the directory; locally: plain
files the runtime writes). Hidden entries (``..data``, ``..2026_...``, the atomic-update machinery of
Secret volumes) are skipped, symlinks followed. One trailing newline is stripped from a value (a key
written with ``echo``); BIRD cannot use a password containing a newline anyway.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator

from meridio.common import log as logmod

__all__ = ["read_secrets", "watch_secrets"]

Snapshot = dict[str, dict[str, str]]


def _visible(path: pathlib.Path) -> list[pathlib.Path]:
    try:
        return sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def read_secrets(directory: str | os.PathLike[str] | None) -> Snapshot:
    """Every secret under ``directory`` (``{}`` if it is unset or missing)."""
    if not directory:
        return {}
    out: Snapshot = {}
    for secret in _visible(pathlib.Path(directory)):
        if not secret.is_dir():
            continue
        keys: dict[str, str] = {}
        for key in _visible(secret):
            try:
                value = key.read_text()
            except (IsADirectoryError, FileNotFoundError, PermissionError, UnicodeDecodeError):
                continue
            keys[key.name] = value[:-1] if value.endswith("\n") else value
        out[secret.name] = keys
    return out


async def watch_secrets(directory: str | None, interval: float = 1.0, *,
                        log: logmod.Logger = logmod.null) -> AsyncIterator[Snapshot]:
    """Yield the secrets now, then again whenever they change (checked every ``interval`` seconds)."""
    last: Snapshot | None = None
    while True:
        current = await asyncio.to_thread(read_secrets, directory)
        if current != last:
            if last is not None:
                log.info("secretsChanged", secrets=sorted(current))
            last = current
            yield current
        await asyncio.sleep(interval)
