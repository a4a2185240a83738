"""Trench (Meridio e2e 21, skipped by Meridio's default config, run here): deleting trench-a removes
every workload of the trench; re-applying it brings everything back and the TAPAs re-open by themselves."""
from __future__ import annotations

from tests.e2e.framework import E2E, FAMILIES, VIP1, _until, wait_baseline


def test_delete_and_create_trench_a_restores_traffic_to_all_targets(e2e: E2E) -> None:
    e2e.delete("trench", "trench-a")
    _until("every trench-a pod gone",
           lambda: not [p for p in e2e.status()["pods"] if p["trench"] == "trench-a"], 60)
    e2e.apply("init-trench-a.yaml")
    e2e.wait_ready()
    wait_baseline(e2e, timeout=120)
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, 4)
