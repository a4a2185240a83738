"""Attractor (Meridio e2e 18): a new attractor on its own external segment (VLAN 102) with its own
gateways and VIP, whose conduit's stream a target opens at runtime."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, OPEN_A, VIP2, wait_baseline

POD = "target-a-0"


@pytest.fixture
def new_attractor(e2e: E2E) -> Iterator[None]:
    e2e.apply("new-attractor.yaml")
    try:
        e2e.wait_ready()
        e2e.target("open", POD, "trench-a", "conduit-a-3", "stream-a-iii")
        e2e.wait_streams(POD, [OPEN_A, "OPEN - stream-a-iii - conduit-a-3 - trench-a"])
        e2e.wait_lb("attractor-a-3", "stream-a-iii", 1)
        yield
    finally:
        e2e.target("close", POD, "trench-a", "conduit-a-3", "stream-a-iii")
        e2e.wait_streams(POD, [OPEN_A])
        e2e.delete_file("new-attractor.yaml")
        e2e.wait_ready()
        wait_baseline(e2e)


def test_new_attractor_announces_vip_2_and_serves_the_target_that_opened_its_stream(e2e: E2E,
                                                                                   new_attractor: None) -> None:
    for family in FAMILIES:
        report = e2e.expect_traffic("trench-a", VIP2[family], 4000, 1)
        assert list(report["hosts"]) == [POD]
