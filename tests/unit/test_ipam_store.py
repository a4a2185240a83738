"""IPAM sqlite persistence: allocations survive a reopen; bad files are refused, never rewritten.

Real: sqlite on files under pytest's tmp_path. Fake: the clock.
"""
from __future__ import annotations

import contextlib
import ipaddress
import pathlib
import sqlite3

import pytest

from meridio.common.clock import FakeClock
from meridio.ipam import store as storemod
from meridio.ipam import tree
from meridio.ipam.registry import ChildRequest, Registry

LAYOUTS = (tree.Layout(tree.Family.IPV4, ipaddress.ip_network("172.16.0.0/16"), 20, 24),
           tree.Layout(tree.Family.IPV6, ipaddress.ip_network("fd00::/48"), 56, 64))


def child(name: str, node: str = "node-1", family: int = 0) -> ChildRequest:
    return ChildRequest(name=name, trench="trench-a", conduit="conduit-a", node=node, family=family)


def open_registry(path: pathlib.Path, layouts: tuple[tree.Layout, ...] = LAYOUTS) -> Registry:
    return Registry(storemod.Store.open(str(path)), trench="trench-a", layouts=layouts, clock=FakeClock())


async def test_reopened_registry_returns_the_same_allocations(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    reg = open_registry(db)
    reg.set_conduits(["conduit-a", "conduit-b"])
    first = [str(await reg.allocate(c, timeout=0))
             for c in (child("bridge"), child("x-src"), child("bridge", "node-2"), child("bridge", family=1))]
    entries = sorted(reg.entries(), key=lambda e: e.path)
    reg.close()

    again = open_registry(db)
    assert sorted(again.entries(), key=lambda e: e.path) == entries
    assert [str(await again.allocate(c, timeout=0))
            for c in (child("bridge"), child("x-src"), child("bridge", "node-2"), child("bridge", family=1))] == first
    assert str(await again.allocate(child("y-src"), timeout=0)) == "172.16.0.3/24"


async def test_conduit_prefixes_are_served_after_a_restart_before_the_nsp_answers(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    reg = open_registry(db)
    reg.set_conduits(["conduit-a"])
    reg.close()
    again = open_registry(db)
    assert str(await again.allocate(child("bridge"), timeout=0)) == "172.16.0.1/24"


def test_missing_file_and_directory_are_created(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "run" / "ipam" / "data" / "registry.db"
    reg = open_registry(db)
    assert db.exists()
    assert [e.path for e in reg.entries()] == [("trench-a-0",), ("trench-a-1",)]


def test_changed_trench_prefix_is_refused_and_the_stored_one_kept(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    open_registry(db).close()
    other = (tree.Layout(tree.Family.IPV4, ipaddress.ip_network("10.0.0.0/16"), 20, 24),)
    store = storemod.Store.open(str(db))
    with pytest.raises(tree.LayoutConflict, match="trench-a-0 is stored as 172.16.0.0/16 but configured as 10.0"):
        Registry(store, trench="trench-a", layouts=other, clock=FakeClock())
    store.close()
    assert [str(e.network) for e in open_registry(db).entries()] == ["172.16.0.0/16", "fd00::/48"]


@pytest.mark.parametrize("content", [b"this is not a database, just some text" * 200, b"SQLite format 3\x00" + b"\xff" * 2000],
                         ids=["text", "truncated-sqlite-header"])
def test_corrupt_file_is_refused_by_name_and_left_untouched(tmp_path: pathlib.Path, content: bytes) -> None:
    db = tmp_path / "registry.db"
    db.write_bytes(content)
    with pytest.raises(storemod.IpamStoreError, match=str(db)):
        storemod.Store.open(str(db))
    assert db.read_bytes() == content


def test_another_programs_database_is_refused(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    with contextlib.closing(sqlite3.connect(db)) as other:
        other.execute("CREATE TABLE targets (id TEXT)")
        other.commit()
    with pytest.raises(storemod.IpamStoreError, match="is not an IPAM registry"):
        storemod.Store.open(str(db))


def test_bad_row_is_refused_naming_the_file_and_row(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    storemod.Store.open(str(db)).close()
    with contextlib.closing(sqlite3.connect(db)) as raw:
        raw.execute("INSERT INTO prefixes VALUES ('[\"trench-a-0\"]', '172.16.0.1/16', 0)")
        raw.commit()
    with pytest.raises(storemod.IpamStoreError, match=r"bad row .*172\.16\.0\.1/16"):
        storemod.Store.open(str(db)).load()


def test_a_second_ipam_on_the_same_file_is_refused(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    first = open_registry(db)
    with pytest.raises(storemod.IpamStoreError, match="in use by another process"):
        storemod.Store.open(str(db))
    first.close()
    storemod.Store.open(str(db)).close()


def test_one_operation_is_stored_in_one_transaction(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "registry.db"
    store = storemod.Store.open(str(db))
    good = tree.Put(tree.Entry(("t-0",), ipaddress.ip_network("10.0.0.0/8"), 1.0))
    bad = tree.Put(tree.Entry(("t-0", "c"), ipaddress.ip_network("10.0.0.0/20"), object()))  # type: ignore[arg-type]
    with pytest.raises(storemod.IpamStoreError, match="cannot write"):
        store.apply([good, bad])
    assert store.load() == []


@pytest.mark.parametrize("content", [b"", None], ids=["0-bytes", "empty-sqlite-database"])
def test_an_existing_file_without_the_schema_is_refused_not_read_as_no_allocations(
        tmp_path: pathlib.Path, content: bytes | None) -> None:
    db = tmp_path / "registry.db"
    if content is None:
        with contextlib.closing(sqlite3.connect(db)) as other:
            other.execute("PRAGMA user_version = 0")
            other.execute("VACUUM")  # a valid, empty sqlite file
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    with pytest.raises(storemod.IpamStoreError) as err:
        storemod.Store.open(str(db))
    assert str(db) in str(err.value) and "restore a backup" in str(err.value) and "move it aside" in str(err.value)
    assert db.read_bytes() == before


def test_a_new_registry_is_created_complete_under_its_name(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "sub" / "registry.db"
    storemod.Store.open(str(db)).close()
    assert sorted(p.name for p in db.parent.iterdir()) == ["registry.db"]
    storemod.Store.open(str(db)).close()  # and it opens again as a registry
