"""Vip (Meridio e2e 20): a new VIP added to an attractor and a flow is announced, programmed and served."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.framework import E2E, FAMILIES, VIP2, wait_baseline


@pytest.fixture
def new_vip(e2e: E2E) -> Iterator[None]:
    e2e.apply("new-vip.yaml")
    try:
        yield
    finally:
        e2e.apply("init-trench-a.yaml")
        e2e.delete("vip", "vip-a-2-v4")
        e2e.delete("vip", "vip-a-2-v6")
        wait_baseline(e2e)


def test_new_vip_2_reaches_all_targets(e2e: E2E, new_vip: None) -> None:
    for family in FAMILIES:
        e2e.expect_traffic("trench-a", VIP2[family], 4000, 4)
