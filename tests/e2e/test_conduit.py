"""Conduit (Meridio e2e 19): destination port NAT — clients use port 80, targets listen on 4000."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, VIP1, wait_baseline


@pytest.fixture
def port_nat(e2e: E2E) -> Iterator[None]:
    e2e.apply("conduit-destination-port-nats.yaml")
    try:
        yield
    finally:
        e2e.apply("init-trench-a.yaml")
        wait_baseline(e2e)


def test_port_80_is_translated_to_4000_and_reaches_all_targets(e2e: E2E, port_nat: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP1[family], 80, 4)
