"""sqlite persistence of the target registry (``NSP_DATASOURCE``, default ``/run/nsp/data/registry.db``).

Table ``targets``: one row per target ID, human-readable columns. Table ``owners``: the identity
(``spiffe://`` URI) that registered each target, for the NSP's authorisation (:mod:`meridio.nsp.authz`);
it is created in a database of an older version on open (its targets have no owner then).
Every :class:`~meridio.nsp.registry.Change`
is written in one transaction before the RPC that caused it returns (WAL journal,
``synchronous=FULL``: a committed change survives a SIGKILL and a power cut). Keepalive deadlines are
not stored: restored entries get fresh timers.

A database that sqlite reports as corrupt (or not a database, or with rows we cannot decode) is never
silently dropped: it is renamed ``<file>.corrupt-<UTC time>`` (with its ``-wal``/``-shm`` files), an
error naming both files is logged, and an empty registry starts (targets re-register within their
refresh period). An existing 0-byte file is refused (:class:`RegistryStoreError`, the NSP exits 1), as
sqlite would otherwise silently take it for a new database. A database that cannot be opened at all
(permissions, a directory in the way) is a :class:`RegistryStoreError` naming the file.
"""
from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from meridio.api import model
from meridio.common import log as logmod
from meridio.common.retry import TemporaryError
from meridio.nsp import registry

__all__ = ["RegistryStoreError", "TargetStore", "open_store", "DEFAULT_PATH"]

DEFAULT_PATH = "/run/nsp/data/registry.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    id           TEXT PRIMARY KEY,
    ips          TEXT NOT NULL,     -- JSON list of strings
    context      TEXT NOT NULL,     -- JSON object string -> string
    status       INTEGER NOT NULL,  -- nsp.v1 Target.Status
    type         INTEGER NOT NULL,  -- nsp.v1 Target.Type
    stream_name  TEXT,              -- NULL: no stream
    max_targets  INTEGER NOT NULL DEFAULT 0,
    conduit_name TEXT,              -- NULL: no conduit
    trench_name  TEXT               -- NULL: no trench
)
"""
_OWNERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    id       TEXT PRIMARY KEY,      -- target ID, as in targets
    identity TEXT NOT NULL          -- spiffe:// URI of the registering component
)
"""
_COLUMNS = "id, ips, context, status, type, stream_name, max_targets, conduit_name, trench_name"
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class RegistryStoreError(TemporaryError):
    """The registry database cannot be used (the message names the file)."""


class _Corrupt(Exception):
    pass


def _row(tid: str, t: model.Target) -> tuple[Any, ...]:
    s = t.stream
    c = s.conduit if s else None
    tr = c.trench if c else None
    return (tid, json.dumps(list(t.ips)), json.dumps(dict(t.context), sort_keys=True), int(t.status),
            int(t.type), s.name if s else None, s.max_targets if s else 0, c.name if c else None,
            tr.name if tr else None)


def _target(row: tuple[Any, ...]) -> model.Target:
    _, ips, context, status, type_, stream_name, max_targets, conduit_name, trench_name = row
    ips_v, ctx_v = json.loads(ips), json.loads(context)
    if not isinstance(ips_v, list) or not all(isinstance(i, str) for i in ips_v):
        raise ValueError(f"ips is not a list of strings: {ips!r}")
    if not isinstance(ctx_v, dict) or not all(isinstance(v, str) for v in ctx_v.values()):
        raise ValueError(f"context is not an object of strings: {context!r}")
    trench = model.Trench(trench_name) if trench_name is not None else None
    conduit = model.Conduit(conduit_name, trench) if conduit_name is not None else None
    stream = model.Stream(stream_name, conduit, int(max_targets)) if stream_name is not None else None
    return model.Target.make(ips=ips_v, context=ctx_v, status=model.TargetStatus(status),
                             type=model.TargetType(type_), stream=stream)


class TargetStore:
    """An open registry database. Not thread-safe: one owner (the registry task) uses it."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path

    def load(self) -> list[model.Target]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM targets ORDER BY id").fetchall()
        return [_target(r) for r in rows]

    def owners(self) -> dict[str, str]:
        """Target ID → owner identity URI."""
        return dict(self._conn.execute("SELECT id, identity FROM owners").fetchall())

    def apply(self, change: registry.Change, owners: Mapping[str, str] | None = None) -> None:
        """Write ``change`` and new ``owners`` in one transaction (refreshes are not written); a deleted
        target loses its owner."""
        if not change.put and not change.delete and not owners:
            return
        try:
            with self._conn:
                self._conn.executemany("DELETE FROM targets WHERE id = ?", [(d,) for d in change.delete])
                self._conn.executemany("DELETE FROM owners WHERE id = ?", [(d,) for d in change.delete])
                self._conn.executemany("INSERT OR REPLACE INTO owners (id, identity) VALUES (?,?)",
                                       sorted((owners or {}).items()))
                self._conn.executemany(f"INSERT OR REPLACE INTO targets ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                                       [_row(tid, t) for tid, t in change.put])
        except sqlite3.Error as exc:
            raise RegistryStoreError(f"cannot write target registry database {self.path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()


def _connect(path: str) -> tuple[sqlite3.Connection, list[model.Target]]:
    conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
    try:
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise _Corrupt("integrity check failed")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        with conn:
            conn.execute(_SCHEMA)
            conn.execute(_OWNERS_SCHEMA)
        try:
            targets = TargetStore(conn, path).load()
        except (ValueError, TypeError, KeyError) as exc:
            raise _Corrupt(f"undecodable row: {exc}") from None
        return conn, targets
    except BaseException:
        conn.close()
        raise


def _set_aside(path: str, now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = f"{path}.corrupt-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def open_store(path: str = DEFAULT_PATH, *, log: logmod.Logger = logmod.null,
               now: Callable[[], float] = time.time) -> tuple[TargetStore, list[model.Target]]:
    """Open (creating parent directories) and load the database; see the module docstring."""
    try:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryStoreError(f"cannot create the directory of target registry database {path}: {exc}") from None
    if os.path.exists(path) and os.path.getsize(path) == 0:
        # sqlite would take a 0-byte file for a new database: a damaged registry must not pass for an empty one.
        raise RegistryStoreError(f"target registry database {path} is empty (0 bytes), not a registry: to recover, "
                                 "restore a backup of it, or move it aside to start with an empty registry")
    try:
        conn, targets = _connect(path)
    except (_Corrupt, sqlite3.DatabaseError) as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(exc, _Corrupt) and (code is None or code & 0xFF not in _CORRUPT_CODES):
            raise RegistryStoreError(f"cannot open target registry database {path}: {exc}") from None
        aside = _set_aside(path, now())
        log.error("registryCorrupt", file=path, movedTo=aside, error=str(exc),
                  reason="startingWithEmptyRegistry")
        try:
            conn, targets = _connect(path)
        except sqlite3.Error as exc2:
            raise RegistryStoreError(f"cannot open target registry database {path}: {exc2}") from None
    return TargetStore(conn, path), targets
