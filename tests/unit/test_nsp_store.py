"""sqlite persistence of the target registry: round trip, restore with fresh timers, corrupt files.

Real sqlite files in tmp dirs; no network.
"""
from __future__ import annotations

import json
import os
import pathlib
import sqlite3

import pytest

from meridio.api import model as m
from meridio.common import log as logmod
from meridio.common.clock import FakeClock
from meridio.nsp import store, targets
from meridio.nsp.registry import Registry

TA = m.Trench("trench-a")
S1 = m.Stream("stream-a-i", m.Conduit("conduit-a-1", TA), 100)
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def t(ip: str, ident: str = "1", **kw: object) -> m.Target:
    return m.Target.make(ips=[ip], context={"identifier": ident}, stream=S1, **kw)  # type: ignore[arg-type]


def open_owner(path: pathlib.Path, clock: FakeClock, timeout: float = 60) -> targets.Targets:
    db, restored = store.open_store(str(path))
    reg = Registry(clock=clock, timeout=timeout)
    reg.restore(restored)
    return targets.Targets(reg, db)


class ListLog(logmod.Logger):
    """A logger that records (message, fields) in a list (a test double for log assertions)."""

    def __init__(self, lines: list[tuple[str, dict[str, object]]] | None = None,
                 bound: dict[str, object] | None = None) -> None:
        super().__init__(logmod.null._logger)  # noqa: SLF001
        self.lines = [] if lines is None else lines
        self.bound = bound or {}

    def bind(self, **fields: object) -> ListLog:
        return ListLog(self.lines, {**self.bound, **fields})

    def _log(self, level: int, message: str, fields: dict[str, object], exc_info: bool = False) -> None:
        self.lines.append((message, {**self.bound, **fields}))


def test_every_kind_of_target_survives_a_restart_unchanged(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "deep" / "dir" / "registry.db"
    owner = open_owner(path, FakeClock())
    fe = m.Target.make(ips=["fe-host"], context={"identifier": "fe-host"}, type=m.TargetType.FRONTEND)
    lb = m.Target.make(context={"identifier": "lb-0", "netns": "/run/netns/x"}, type=m.TargetType.LOADBALANCER,
                       stream=m.Stream("", m.Conduit("conduit-a-1", TA)))
    for x in (t("172.16.1.6/24"), fe, lb):
        owner.register(x)
    owner.register(t("172.16.1.6/24", status=m.TargetStatus.ENABLED))
    before = owner.targets()
    owner.close()

    again = open_owner(path, FakeClock())
    assert again.targets() == before
    assert len(before) == 3 and m.TargetStatus.ENABLED in {x.status for x in before}
    again.close()


def test_a_change_is_on_disk_before_register_returns(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    owner = open_owner(path, FakeClock())
    owner.register(t("172.16.1.6/24"))
    # A second, independent connection (as after a SIGKILL) sees the committed row.
    rows = sqlite3.connect(path).execute("SELECT id, ips, status FROM targets").fetchall()
    assert rows == [("172.16.1.6/24-0-stream-a-i.conduit-a-1.trench-a", json.dumps(["172.16.1.6/24"]), 1)]
    owner.unregister(t("172.16.1.6/24"))
    assert sqlite3.connect(path).execute("SELECT count(*) FROM targets").fetchone() == (0,)
    owner.close()


def test_expired_and_conflicting_targets_are_deleted_from_disk(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    clock = FakeClock()
    owner = open_owner(path, clock, timeout=10)
    owner.register(t("172.16.1.6/24"))
    owner.register(m.Target.make(ips=["172.16.9.9/24"], stream=m.Stream("stream-a-i", m.Conduit("c2", TA))))
    clock.advance(10)
    owner.expire_due()
    owner.close()
    assert store.open_store(str(path))[1] == []


def test_restored_entries_expire_one_full_timeout_after_the_restart(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    owner = open_owner(path, FakeClock(), timeout=60)
    owner.register(t("172.16.1.6/24"))
    owner.close()
    clock = FakeClock(start=5_000.0)  # the new process's clock: old deadlines mean nothing
    again = open_owner(path, clock, timeout=60)
    clock.advance(59)
    assert again.expire_due() == ()
    clock.advance(1)
    assert len(again.expire_due()) == 1
    again.close()


def test_a_corrupt_database_is_set_aside_logged_and_replaced_by_an_empty_one(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not a sqlite database, but somebody's precious bytes" * 100)
    log = ListLog()
    db, restored = store.open_store(str(path), log=log, now=lambda: NOW)
    assert restored == []
    aside = pathlib.Path(f"{path}.corrupt-20260921T141320Z")
    assert aside.read_bytes().startswith(b"this is not a sqlite database")
    assert log.lines == [("registryCorrupt", {"file": str(path), "movedTo": str(aside),
                                              "error": "file is not a database",
                                              "reason": "startingWithEmptyRegistry"})]
    db.close()


def test_a_database_with_undecodable_rows_is_set_aside_too(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    db, _ = store.open_store(str(path))
    db.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO targets VALUES ('x', 'not json', '{}', 0, 0, NULL, 0, NULL, NULL)")
    log = ListLog()
    db, restored = store.open_store(str(path), log=log, now=lambda: NOW)
    assert restored == [] and [line[0] for line in log.lines] == ["registryCorrupt"]
    assert os.path.exists(f"{path}.corrupt-20260921T141320Z")
    db.close()


def test_a_database_that_cannot_be_opened_is_an_error_naming_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(store.RegistryStoreError, match=str(path)):
        store.open_store(str(path))
    assert path.is_dir()  # left alone


def test_a_zero_byte_database_is_refused_naming_the_file_and_the_way_to_recover(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"")
    with pytest.raises(store.RegistryStoreError) as err:
        store.open_store(str(path))
    assert str(path) in str(err.value) and "move it aside" in str(err.value) and "restore a backup" in str(err.value)
    assert path.read_bytes() == b""
