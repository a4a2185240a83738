"""Scaling (Meridio e2e 7-8): scaling the target deployment down and up changes the targets that get
traffic, with no lost connection."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, VIP1, wait_baseline


@pytest.fixture
def scaled(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[int]:
    replicas = request.param
    e2e.scale("target-a", replicas)
    try:
        e2e.wait_lb("attractor-a-1", "stream-a-i", replicas)
        yield replicas
    finally:
        e2e.scale("target-a", 4)
        wait_baseline(e2e)


@pytest.mark.parametrize("scaled", [3], indirect=True, ids=["scale-down"])
def test_scale_down_to_3_targets_spreads_traffic_over_exactly_3(e2e: E2E, scaled: int) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, scaled, absent=["target-a-3"])


@pytest.mark.parametrize("scaled", [5], indirect=True, ids=["scale-up"])
def test_scale_up_to_5_targets_spreads_traffic_over_exactly_5(e2e: E2E, scaled: int) -> None:
    for family in FAMILIES:
        report = e2e.expect_traffic("trench-a", VIP1[family], 4000, scaled)
        assert "target-a-4" in report["hosts"]
