"""sqlite persistence of the IPAM prefix tree (``IPAM_DATASOURCE``, default ``/run/ipam/data/registry.db``).

One row per entry: its path of names (JSON), its network and its ``updated_at``. :meth:`Store.apply`
writes the changes of one operation in one transaction with ``synchronous=FULL``, so an allocation the
IPAM has answered survives a crash, and an operation is never half stored. The file is held with an
exclusive lock while the IPAM runs, so a second IPAM on the same file fails at start instead of
corrupting it (these rules are :mod:`meridio.common.sqlitefile`, shared with the local runtime's store).
A missing file is created complete (schema written under another name, synced,
renamed), so an existing file without the schema, a 0-byte file included, is refused rather than
read as "no allocations". A file that is not an IPAM registry (0 bytes, corrupt, another program's
database, a newer schema) is never modified or replaced: opening it raises :class:`IpamStoreError`
naming the file and how to recover (restore a backup, or move it aside to start empty).
"""
from __future__ import annotations

import ipaddress
import json
import sqlite3
from collections.abc import Sequence

from meridio.common import sqlitefile
from meridio.common.retry import PermanentError
from meridio.ipam import tree

__all__ = ["RECOVER", "SCHEMA_VERSION", "Store", "IpamStoreError"]

RECOVER = "to recover, restore a backup of it, or move it aside to start with no allocations"

SCHEMA_VERSION = 1
_TABLE = "prefixes"
_SCHEMA = f"""
CREATE TABLE {_TABLE} (
    path       TEXT PRIMARY KEY,  -- JSON array of names, trench first
    network    TEXT NOT NULL,     -- e.g. 172.16.1.0/24
    updated_at REAL NOT NULL      -- wall-clock seconds
)
"""


_FILE = sqlitefile.Schema(noun="IPAM registry", article="an", sql=_SCHEMA, tables=frozenset({_TABLE}),
                          version=SCHEMA_VERSION, nothing="no allocations", recover=RECOVER)


class IpamStoreError(PermanentError):
    """The registry file cannot be used (message names the file and the reason)."""


class Store:
    """An open registry. Use :meth:`open`; every method raises :class:`IpamStoreError` on failure."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str) -> Store:
        """Open (creating it and its directory if missing) the registry at ``path`` (``:memory:`` too)."""
        return cls(sqlitefile.open_checked(path, _FILE, IpamStoreError), path)

    def load(self) -> list[tree.Entry]:
        """Every stored entry."""
        try:
            rows = self._db.execute(f"SELECT path, network, updated_at FROM {_TABLE}").fetchall()
        except sqlite3.Error as exc:
            raise IpamStoreError(f"cannot read IPAM registry {self.path}: {exc}") from None
        return [_entry_from_row(self.path, row) for row in rows]

    def apply(self, changes: Sequence[tree.Change]) -> None:
        """Store ``changes`` in one transaction: all of them or (on error) none."""
        if not changes:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for change in changes:
                    self._apply_one(change)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise IpamStoreError(f"cannot write IPAM registry {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _apply_one(self, change: tree.Change) -> None:
        if isinstance(change, tree.Put):
            e = change.entry
            self._db.execute(f"INSERT OR REPLACE INTO {_TABLE} (path, network, updated_at) VALUES (?, ?, ?)",
                             (json.dumps(list(e.path)), str(e.network), e.updated_at))
        else:
            self._db.execute(f"DELETE FROM {_TABLE} WHERE path = ?", (json.dumps(list(change.path)),))


def _entry_from_row(path: str, row: tuple[str, str, float]) -> tree.Entry:
    raw_path, raw_network, updated_at = row
    try:
        names = json.loads(raw_path)
        if not isinstance(names, list) or not 1 <= len(names) <= len(tree.Level) \
                or not all(isinstance(n, str) and n for n in names):
            raise ValueError("path must be a list of 1 to 4 non-empty names")
        network = ipaddress.ip_network(raw_network, strict=True)
        return tree.Entry(tuple(names), network, float(updated_at))
    except (ValueError, TypeError) as exc:
        raise IpamStoreError(f"IPAM registry {path} has a bad row (path {raw_path!r}, network {raw_network!r}): "
                         f"{exc}") from None
