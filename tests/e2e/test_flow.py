"""Flow (Meridio e2e 14-17): a new flow, flow priority (higher wins), a destination port range and byte
matches, all applied at runtime without restarting anything."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, VIP1, wait_baseline


@pytest.fixture
def applied(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[None]:
    before = e2e.pids()
    e2e.apply(request.param)
    try:
        yield
        assert e2e.pids() == before, "changing flows must restart no process"
    finally:
        if request.param == "new-flow.yaml":
            e2e.delete("flow", "flow-a-x-tcp")
        else:
            e2e.apply("init-trench-a.yaml")
        wait_baseline(e2e)


@pytest.mark.parametrize("applied", ["new-flow.yaml"], indirect=True)
def test_new_flow_brings_port_4002_to_stream_a_i(e2e: E2E, applied: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4002, 4)


@pytest.mark.parametrize("applied", ["flow-priority.yaml"], indirect=True)
def test_flow_priority_3_beats_priority_2_on_port_4001(e2e: E2E, applied: None) -> None:
    for family in FAMILIES:  # flow-a-y-tcp (stream-a-ii, no target) would drop 4001; flow-a-z-tcp wins
        e2e.expect_traffic("trench-a", VIP1[family], 4001, 4)


@pytest.mark.parametrize("applied", ["flow-destination-ports-range.yaml"], indirect=True)
def test_destination_port_range_4000_4002_reaches_all_targets_on_every_port(e2e: E2E, applied: None) -> None:
    for family in FAMILIES:
        for port in (4000, 4001, 4002):
            e2e.expect_traffic("trench-a", VIP1[family], port, 4)


@pytest.mark.parametrize("applied", ["flow-byte-matches.yaml"], indirect=True)
def test_byte_match_on_the_tcp_destination_port_lets_4002_in_and_keeps_4000_out(e2e: E2E, applied: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4002, 4)
        e2e.expect_no_traffic("trench-a", VIP1[family], 4000)
