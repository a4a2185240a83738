"""MultiTrenches (Meridio e2e 5-6): two trenches with the same VIP address stay isolated, and a target
can leave one trench for the other at runtime."""
from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, OPEN_A, OPEN_B, VIP1, TrafficError, wait_baseline

POD = "target-a-0"


def test_mt_parallel_traffic_in_both_trenches_at_once_reaches_each_trench_s_own_targets(e2e: E2E) -> None:
    for family in FAMILIES:
        for trench in ("trench-a", "trench-b"):  # settled first, so the parallel run measures isolation only
            e2e.expect_traffic(trench, VIP1[family], 4000, 4)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            a, b = pool.map(e2e.traffic, ("trench-a", "trench-b"), (VIP1[family],) * 2, (4000,) * 2)
        for report, own in ((a, "target-a-"), (b, "target-b-")):
            if report["lost"] or len(report["hosts"]) != 4 or not all(h.startswith(own) for h in report["hosts"]):
                raise TrafficError(f"expected 4 {own}* targets and 0 lost: {report['hosts']}, lost {report['lost']}")


@pytest.fixture
def switched(e2e: E2E) -> Iterator[None]:
    e2e.target("close", POD, "trench-a", "conduit-a-1", "stream-a-i")
    e2e.target("open", POD, "trench-b", "conduit-b-1", "stream-b-i")
    try:
        e2e.wait_streams(POD, [OPEN_B])
        e2e.wait_lb("attractor-a-1", "stream-a-i", 3)
        e2e.wait_lb("attractor-b-1", "stream-b-i", 5)
        yield
    finally:
        e2e.target("close", POD, "trench-b", "conduit-b-1", "stream-b-i")
        e2e.target("open", POD, "trench-a", "conduit-a-1", "stream-a-i")
        e2e.wait_streams(POD, [OPEN_A])
        wait_baseline(e2e)


def test_mt_switch_a_target_moved_from_trench_a_to_trench_b_serves_trench_b_only(e2e: E2E, switched: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, 3, absent=[POD])
        report = e2e.expect_traffic("trench-b", VIP1[family], 4000, 5)
        assert POD in report["hosts"]
