"""Opening a sqlite file that must be one of ours: created complete, checked at open, refused loudly.

Used by IPAM's registry (``IPAM_DATASOURCE``) and the local runtime's ``store.db``. The rules:

- A missing file is created complete: the schema is written under another name, synced and renamed into
  place. So a file at the path always has the schema, and an existing file without it (0 bytes, an empty
  sqlite database) is refused rather than read as "nothing stored yet".
- An existing file is checked (``PRAGMA quick_check``, ``user_version``, its tables) before anything is
  written to it; a 0-byte, corrupt or foreign file is never modified or replaced: the caller's error
  class is raised with one sentence naming the file, what is wrong and how to recover.
- Only then is it switched to WAL with ``synchronous=FULL`` (a commit is on disk before it returns, and
  survives kill -9 and a power cut) and, with ``exclusive``, locked for the life of the connection, so a
  second process on the same file fails at open instead of writing beside the first.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3

__all__ = ["Schema", "open_checked"]

_SQLITE_CORRUPT = 11


@dataclasses.dataclass(frozen=True)
class Schema:
    """What a file of one kind holds, and the words its errors use."""

    noun: str
    """What the file is, in messages: ``IPAM registry``."""
    article: str
    """``a`` or ``an``, for "is not an IPAM registry"."""
    sql: str
    """The statements that create the tables (run in one transaction on a new file)."""
    tables: frozenset[str]
    """Tables a file of ours has (extra ones are allowed)."""
    version: int
    """``PRAGMA user_version`` of a file of ours."""
    nothing: str
    """What an empty file would wrongly pass for: ``no allocations``."""
    recover: str
    """How the user gets out of a refused file: ``to recover, restore a backup of it, or ...``."""
    unversioned_ok: bool = False
    """Take a file with ``user_version`` 0 that has every table for this version (a file written before
    versions were recorded), and stamp it."""


def open_checked(path: str, schema: Schema, error: type[Exception], *, exclusive: bool = True,
                 timeout_s: float = 0.5, check_same_thread: bool = True) -> sqlite3.Connection:
    """An autocommit connection (``isolation_level=None``) to the checked file at ``path`` (or ``:memory:``).

    Creates the file and its directory when missing; raises ``error`` naming ``path`` otherwise.
    """
    try:
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if not os.path.exists(path):
                _create(path, schema)
            elif os.path.getsize(path) == 0:
                raise error(f"{schema.noun} {path} is empty (0 bytes), not {schema.article} {schema.noun}: refusing "
                            f"to start with {schema.nothing}; {schema.recover}")
        db = sqlite3.connect(path, isolation_level=None, timeout=timeout_s, check_same_thread=check_same_thread)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open {schema.noun} {path}: {exc}") from None
    try:
        _prepare(db, path, schema, error, fresh=path == ":memory:", exclusive=exclusive)
    except BaseException:
        db.close()
        raise
    return db


def _create(path: str, schema: Schema) -> None:
    """A new file at ``path``, complete or not at all: made under another name, synced, renamed."""
    tmp = f"{path}.new-{os.getpid()}"
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp + suffix)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(f"BEGIN; {schema.sql}; PRAGMA user_version = {schema.version}; COMMIT;")
    finally:
        db.close()  # the last connection: the WAL is checkpointed into the file and removed
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(os.path.dirname(os.path.abspath(path)), directory=True)


def _fsync(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare(db: sqlite3.Connection, path: str, schema: Schema, error: type[Exception], *, fresh: bool,
             exclusive: bool) -> None:
    """Check the file is an intact one of ``schema`` (``fresh``, in memory: create the schema)."""
    try:
        if exclusive:
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        complete = schema.tables <= tables
        ours = version == schema.version or (schema.unversioned_ok and version == 0)
        if check == "ok" and (fresh or (ours and complete)):
            # Only on a file of ours: a refused file is left byte for byte as it was.
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise error(f"{schema.noun} {path} is in use by another process") from None
        raise error(f"{schema.noun} {path} is not a usable sqlite database: {exc}; {schema.recover}") from None
    except sqlite3.DatabaseError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_CORRUPT:
            raise error(f"{schema.noun} {path} is corrupt ({exc}); {schema.recover}") from None
        raise error(f"{schema.noun} {path} is not a usable sqlite database: {exc}; {schema.recover}") from None
    if check != "ok":
        raise error(f"{schema.noun} {path} is corrupt (integrity check: {check}); {schema.recover}")
    if fresh and version == 0 and not tables:
        _stamp(db, path, schema, error, create=True)
        return
    if not (ours and complete):
        raise error(f"{path} is not {schema.article} {schema.noun} of schema version {schema.version} "
                    f"(user_version {version}, tables {sorted(tables)}); {schema.recover}")
    if version != schema.version:
        _stamp(db, path, schema, error, create=False)


def _stamp(db: sqlite3.Connection, path: str, schema: Schema, error: type[Exception], *, create: bool) -> None:
    statements = f"{schema.sql};" if create else ""
    try:
        db.executescript(f"BEGIN; {statements} PRAGMA user_version = {schema.version}; COMMIT;")
    except sqlite3.Error as exc:
        raise error(f"cannot initialise {schema.noun} {path}: {exc}") from None
