"""The local runtime's persistent state: applied resources, scale overrides, external address leases.

One sqlite file (``<state>/store.db``, WAL, ``synchronous=FULL``). Every change is one transaction,
on disk before the caller answers the user: ``apply`` of a file either stores every object or none, and
a crash of the runtime daemon (kill -9 included) loses nothing (the next ``meridio up`` continues from
it). Resources are kept in their stored YAML form (:func:`meridio.api.resources.to_dict`) and parsed
back with the same strict reader.

The file is opened by the rules of :mod:`meridio.common.sqlitefile`, as IPAM's registry: created
complete, checked at open (``PRAGMA quick_check``, schema), held locked by the one daemon; a 0-byte,
corrupt, schema-less or foreign file is refused with :class:`StateStoreError` naming it and the way out,
and left as it was.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from meridio.api import resources as res
from meridio.common import sqlitefile

__all__ = ["RECOVER", "Store", "StateStoreError"]

RECOVER = ("to recover, restore a backup of it, or move it aside (or run 'meridio down') to start again "
           "from the environment's resource files: resources applied since, scale overrides and address "
           "leases are then lost")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    UNIQUE (kind, namespace, name));
CREATE TABLE IF NOT EXISTS replicas (deployment TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (network TEXT NOT NULL, pod TEXT NOT NULL, host INTEGER NOT NULL,
    PRIMARY KEY (network, pod), UNIQUE (network, host));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FILE = sqlitefile.Schema(noun="runtime store", article="a", sql=_SCHEMA,
                          tables=frozenset({"resources", "replicas", "leases", "meta"}), version=1,
                          nothing="no state", recover=RECOVER, unversioned_ok=True)


class StateStoreError(RuntimeError):
    """The store file cannot be used (the message names it)."""


class Store:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        """One connection, used from the event loop and worker threads: one statement or transaction at a time."""
        self._db = sqlitefile.open_checked(str(path), _FILE, StateStoreError, check_same_thread=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ resources

    def resources(self) -> list[res.Resource]:
        rows = self._rows("SELECT body FROM resources ORDER BY seq")
        return [res.parse_object(json.loads(body), where="store") for (body,) in rows]

    def replace_resources(self, objs: Sequence[res.Resource]) -> None:
        """Make the stored set exactly ``objs`` (one transaction; unchanged objects keep their order)."""
        wanted = {o.ref: o for o in objs}
        with self._tx() as db:
            for kind, ns, name in db.execute("SELECT kind, namespace, name FROM resources").fetchall():
                if (kind, ns, name) not in wanted:
                    db.execute("DELETE FROM resources WHERE kind=? AND namespace=? AND name=?", (kind, ns, name))
            for obj in objs:
                body = json.dumps(res.to_dict(obj), sort_keys=True)
                db.execute("INSERT INTO resources (kind, namespace, name, body) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (kind, namespace, name) DO UPDATE SET body=excluded.body",
                           (obj.KIND, obj.namespace, obj.name, body))

    # ------------------------------------------------------------------ scale overrides

    def replicas(self) -> dict[str, int]:
        return {str(d): int(c) for d, c in self._rows("SELECT deployment, count FROM replicas")}

    def set_replicas(self, deployment: str, count: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO replicas VALUES (?, ?) ON CONFLICT (deployment) DO UPDATE SET count=excluded.count",
                       (deployment, count))

    # ------------------------------------------------------------------ external address leases

    def leases(self, network: str) -> dict[str, int]:
        return {str(p): int(h) for p, h in self._rows("SELECT pod, host FROM leases WHERE network=?", (network,))}

    def lease(self, network: str, pod: str, candidates: Iterator[int] | Sequence[int]) -> int:
        """The host index leased to ``pod`` on ``network``: its existing one, else the first free candidate."""
        with self._tx() as db:
            row = db.execute("SELECT host FROM leases WHERE network=? AND pod=?", (network, pod)).fetchone()
            if row:
                return int(row[0])
            taken = {h for (h,) in db.execute("SELECT host FROM leases WHERE network=?", (network,))}
            for host in candidates:
                if host not in taken:
                    db.execute("INSERT INTO leases VALUES (?, ?, ?)", (network, pod, host))
                    return host
        raise StateStoreError(f"network {network}: no free address left for {pod}")

    def release(self, pod: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE pod=?", (pod,))

    # ------------------------------------------------------------------ small values

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return None if not rows else str(rows[0][0])

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self._tx() as db:
            for k, v in values.items():
                db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value", (k, v))
