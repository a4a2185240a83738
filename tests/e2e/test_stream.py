"""Stream (Meridio e2e 12-13): a new stream opened by one target, and a stream that admits one target
only (the second target opening it sees UNAVAILABLE and gets no traffic)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, OPEN_A, VIP1, wait_baseline

OPEN_III = "OPEN - stream-a-iii - conduit-a-1 - trench-a"


def _revert(e2e: E2E, pods: list[str]) -> None:
    e2e.delete_file("new-stream.yaml")  # stream-a-iii and flow-a-x-tcp (same objects as stream-max-targets.yaml)
    for pod in pods:
        e2e.target("close", pod, "trench-a", "conduit-a-1", "stream-a-iii")
    for pod in pods:
        e2e.wait_streams(pod, [OPEN_A])
    e2e.wait_lb("attractor-a-1", "stream-a-iii", None)
    wait_baseline(e2e)


@pytest.fixture
def new_stream(e2e: E2E) -> Iterator[None]:
    e2e.apply("new-stream.yaml")
    try:
        e2e.target("open", "target-a-0", "trench-a", "conduit-a-1", "stream-a-iii")
        e2e.wait_streams("target-a-0", [OPEN_A, OPEN_III])
        e2e.wait_lb("attractor-a-1", "stream-a-iii", 1)
        yield
    finally:
        _revert(e2e, ["target-a-0"])


def test_new_stream_opened_by_one_target_gives_it_port_4002(e2e: E2E, new_stream: None) -> None:
    for family in FAMILIES:
        report = e2e.expect_traffic("trench-a", VIP1[family], 4002, 1)
        assert list(report["hosts"]) == ["target-a-0"]


@pytest.fixture
def max_one(e2e: E2E) -> Iterator[None]:
    e2e.apply("stream-max-targets.yaml")
    try:
        e2e.target("open", "target-a-0", "trench-a", "conduit-a-1", "stream-a-iii")
        e2e.wait_streams("target-a-0", [OPEN_A, OPEN_III])
        e2e.target("open", "target-a-1", "trench-a", "conduit-a-1", "stream-a-iii")
        e2e.wait_streams("target-a-1", [OPEN_A, "UNAVAILABLE - stream-a-iii - conduit-a-1 - trench-a"])
        e2e.wait_lb("attractor-a-1", "stream-a-iii", 1)
        yield
    finally:
        _revert(e2e, ["target-a-0", "target-a-1"])


def test_stream_with_max_targets_1_serves_only_the_first_target_that_opened_it(e2e: E2E, max_one: None) -> None:
    for family in FAMILIES:
        report = e2e.expect_traffic("trench-a", VIP1[family], 4002, 1, absent=["target-a-1"])
        assert list(report["hosts"]) == ["target-a-0"]
