"""IngressTraffic (Meridio e2e 1-4): TCP and UDP to vip-1 in trench-a reach all 4 targets, v4 and v6."""
from __future__ import annotations

import pytest

from tests.e2e.framework import E2E, FAMILIES, VIP1


@pytest.mark.parametrize("family", FAMILIES, ids=["ipv4", "ipv6"])
def test_tcp_traffic_to_vip_1_port_4000_is_received_by_all_targets(e2e: E2E, family: int) -> None:
    e2e.expect_traffic("trench-a", VIP1[family], 4000, 4)


@pytest.mark.parametrize("family", FAMILIES, ids=["ipv4", "ipv6"])
def test_udp_traffic_to_vip_1_port_4003_is_received_by_all_targets(e2e: E2E, family: int) -> None:
    e2e.expect_traffic("trench-a", VIP1[family], 4003, 4, udp=True)
