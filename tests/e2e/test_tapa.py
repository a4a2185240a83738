"""TAPA (Meridio e2e 9-11): a target closes and re-opens a stream, opens a second stream, and a stream of
a second conduit (a second link), each taking effect in the load balancers at runtime."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, OPEN_A, VIP1, VIP3, wait_baseline

POD = "target-a-0"


@pytest.fixture
def closed(e2e: E2E) -> Iterator[None]:
    e2e.target("close", POD, "trench-a", "conduit-a-1", "stream-a-i")
    try:
        e2e.wait_streams(POD, [])
        e2e.wait_lb("attractor-a-1", "stream-a-i", 3)
        yield
    finally:
        e2e.target("open", POD, "trench-a", "conduit-a-1", "stream-a-i")
        wait_baseline(e2e)


def test_close_stream_a_i_in_one_target_takes_it_out_of_the_traffic(e2e: E2E, closed: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, 3, absent=[POD])


@pytest.fixture
def second_stream(e2e: E2E) -> Iterator[None]:
    e2e.target("open", POD, "trench-a", "conduit-a-1", "stream-a-ii")
    try:
        e2e.wait_streams(POD, [OPEN_A, "OPEN - stream-a-ii - conduit-a-1 - trench-a"])
        e2e.wait_lb("attractor-a-1", "stream-a-ii", 1)
        yield
    finally:
        e2e.target("close", POD, "trench-a", "conduit-a-1", "stream-a-ii")
        e2e.wait_streams(POD, [OPEN_A])
        e2e.wait_lb("attractor-a-1", "stream-a-ii", 0)
        wait_baseline(e2e)


def test_open_stream_a_ii_in_one_target_gives_it_port_4001_alone(e2e: E2E, second_stream: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, 4)
        report = e2e.expect_traffic("trench-a", VIP1[family], 4001, 1)
        assert list(report["hosts"]) == [POD]


@pytest.fixture
def second_conduit(e2e: E2E) -> Iterator[None]:
    e2e.target("open", POD, "trench-a", "conduit-a-2", "stream-a-iv")
    try:
        e2e.wait_streams(POD, [OPEN_A, "OPEN - stream-a-iv - conduit-a-2 - trench-a"])
        e2e.wait_lb("attractor-a-2", "stream-a-iv", 1)
        yield
    finally:
        e2e.target("close", POD, "trench-a", "conduit-a-2", "stream-a-iv")
        e2e.wait_streams(POD, [OPEN_A])
        e2e.wait_lb("attractor-a-2", "stream-a-iv", 0)
        wait_baseline(e2e)


def test_open_stream_a_iv_of_a_second_conduit_in_one_target_gives_it_vip_3(e2e: E2E, second_conduit: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 4000, 4)
        report = e2e.expect_traffic("trench-a", VIP3[family], 4000, 1)
        assert list(report["hosts"]) == [POD]
