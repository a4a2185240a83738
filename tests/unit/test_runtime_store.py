"""The runtime store: resources survive a reopen, replacement is exact, leases are stable; a file that is
not an intact store is refused, naming it and the way out, and left as it was."""
from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import Callable

import pytest

from meridio.api import resources
from meridio.runtime.local import store as store_module
from meridio.runtime.local.store import StateStoreError, Store

OBJS = """
apiVersion: meridio.nordix.org/v1
kind: Trench
metadata: {name: trench-a}
---
apiVersion: meridio.nordix.org/v1
kind: Vip
metadata: {name: vip-1, labels: {trench: trench-a}}
spec: {address: 203.0.113.1/32}
"""


def test_resources_survive_a_reopen_in_their_order(tmp_path: pathlib.Path) -> None:
    objs = resources.loads(OBJS)
    store = Store(tmp_path / "s.db")
    store.replace_resources(objs)
    store.close()
    assert Store(tmp_path / "s.db").resources() == objs


def test_replacing_removes_what_is_gone_and_updates_in_place(tmp_path: pathlib.Path) -> None:
    trench, vip = resources.loads(OBJS)
    store = Store(tmp_path / "s.db")
    store.replace_resources([trench, vip])
    [changed] = resources.loads(OBJS.split("---")[1].replace("203.0.113.1/32", "203.0.113.2/32"))
    store.replace_resources([trench, changed])
    assert store.resources() == [trench, changed]
    store.replace_resources([changed])
    assert store.resources() == [changed]


def test_a_lease_is_kept_per_pod_and_released_for_reuse(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.lease("seg", "fe-0", [1, 2, 3]) == 1
    assert store.lease("seg", "fe-1", [1, 2, 3]) == 2
    assert store.lease("seg", "fe-0", [3]) == 1
    assert store.lease("other", "fe-9", [1]) == 1
    store.release("fe-0")
    assert store.lease("seg", "fe-2", [1, 2, 3]) == 1
    with pytest.raises(StateStoreError, match="no free address left for fe-3"):
        store.lease("seg", "fe-3", [1, 2])


def test_scale_overrides_and_meta_values_persist(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.db")
    store.set_replicas("target-a", 3)
    store.set_replicas("target-a", 5)
    store.set_meta({"initialized": "1"})
    store.close()
    again = Store(tmp_path / "s.db")
    assert again.replicas() == {"target-a": 5} and again.get_meta("initialized") == "1"


def _empty_sqlite(path: pathlib.Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("PRAGMA user_version = 0")
        other.execute("VACUUM")  # a valid sqlite file without a table


def _foreign(path: pathlib.Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("CREATE TABLE targets (id TEXT)")
        other.commit()


def _corrupt_page(path: pathlib.Path) -> None:
    """A store whose last page (a b-tree page of the meta table) has a garbage header: sqlite opens the
    file, quick_check finds it."""
    store = Store(path)
    store.set_meta({f"k{i}": "v" * 200 for i in range(50)})
    store.close()
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as f:
        f.seek(4096 * (pages - 1))
        f.write(b"\xde\xad" * 8)


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: p.write_bytes(b"this is not sqlite" * 100), "not a usable sqlite database"),
    (lambda p: p.write_bytes(b""), "is empty (0 bytes), not a runtime store"),
    (_empty_sqlite, "is not a runtime store of schema version 1"),
    (_foreign, "is not a runtime store of schema version 1"),
    (_corrupt_page, "corrupt"),
], ids=["text", "0-bytes", "empty-sqlite-database", "another-programs-database", "corrupt-page"])
def test_a_file_that_is_not_an_intact_store_is_refused_by_name_and_left_as_it_was(
        tmp_path: pathlib.Path, make: Callable[[pathlib.Path], None], says: str) -> None:
    bad = tmp_path / "store.db"
    make(bad)
    before = bad.read_bytes()
    with pytest.raises(StateStoreError) as err:
        Store(bad)
    message = str(err.value)
    assert str(bad) in message and says in message, message
    assert "restore a backup" in message and "move it aside" in message, message
    assert bad.read_bytes() == before


def test_a_store_written_before_schema_versions_is_taken_and_stamped(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "store.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(store_module._SCHEMA)
        old.execute("INSERT INTO replicas VALUES ('target-a', 3)")
        old.commit()
    store = Store(path)
    assert store.replicas() == {"target-a": 3}
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_new_store_is_created_complete_in_wal_with_full_sync(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state" / "store.db"
    store = Store(path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.db"]


def test_a_second_daemon_on_the_same_store_is_refused_while_the_first_holds_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "store.db"
    first = Store(path)
    first.set_meta({"initialized": "1"})
    with pytest.raises(StateStoreError, match="is in use by another process"):
        Store(path)
    first.close()
    assert Store(path).get_meta("initialized") == "1"
