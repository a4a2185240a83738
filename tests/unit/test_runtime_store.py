"""The runtime store: resources survive a reopen, replacement is exact, leases are stable."""
from __future__ import annotations

import pathlib

import pytest

from meridio.api import resources
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


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "s.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateStoreError, match=f"{bad}: not a usable runtime store"):
        Store(bad)
