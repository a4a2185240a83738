"""Several frontend replicas behind one gateway (ECMP), and an IPv6-only trench.

Real: two FE daemons with their BIRDs in two namespaces, one gateway BIRD (dynamic peers, ``merge paths``),
the NSP process, the kernel's multipath routes. Test doubles: one LB availability service per replica.
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from meridio.bird import birdconf
from meridio.kernel import netns as netnsmod
from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

VIP4, VIP6 = "203.0.113.10", "2001:db8:f::10"
VIPS = {"vip-v4": f"{VIP4}/32", "vip-v6": f"{VIP6}/128"}


@pytest.fixture
def two(netns, procs, tmp_path: pathlib.Path) -> Iterator[FeEnv]:  # type: ignore[no-untyped-def]
    e = FeEnv(netns, procs, tmp_path, replicas=2)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def v6only(netns, procs, tmp_path: pathlib.Path) -> Iterator[FeEnv]:  # type: ignore[no-untyped-def]
    e = FeEnv(netns, procs, tmp_path, fe_ipv4=False)
    try:
        yield e
    finally:
        e.close()


def test_two_replicas_give_the_gateway_an_ecmp_route_to_each_vip(two: FeEnv) -> None:
    seg = two.segment
    two.start_gateway()
    two.start_nsp(testing.nsp_config(vips=VIPS, gateways=[gateway_item("gw-v4", seg.gw_v4),
                                                          gateway_item("gw-v6", seg.gw_v6)]))
    two.start_frontend(0)
    two.start_frontend(1)
    two.lbs[0].set_available(True)
    two.lbs[1].set_available(True)
    eventually(lambda: two.gw_nexthops(VIP4) == {seg.fe_v4(0), seg.fe_v4(1)}, 20,
               message="an IPv4 multipath route over both replicas")
    eventually(lambda: two.gw_nexthops(VIP6) == {seg.fe_v6(0), seg.fe_v6(1)}, 20,
               message="an IPv6 multipath route over both replicas")
    assert two.frontend_targets() == ["fe-0", "fe-1"]

    two.lbs[1].set_available(False)
    eventually(lambda: two.gw_nexthops(VIP4) == {seg.fe_v4(0)} and two.gw_nexthops(VIP6) == {seg.fe_v6(0)}, 10,
               message="only the replica whose LB has targets left")


def test_an_ipv6_only_frontend_without_any_ipv4_address_announces_its_vip(v6only: FeEnv) -> None:
    env = v6only
    fe = env.segment.fe_nss[0]
    assert "inet " not in netnsmod.run(fe, ["ip", "-4", "addr", "show", "dev", "ext0"]).stdout
    env.start_gateway(testing.gateway_config(env.segment, families=(6,)))
    env.start_nsp(testing.nsp_config(vips={"vip-v6": f"{VIP6}/128"},
                                     gateways=[gateway_item("gw-v6", env.segment.gw_v6)]))
    env.start_frontend(0)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP6) == {env.segment.fe_v6(0)}, 20, message="the IPv6 VIP at the gateway")
    started = [e for e in env.fe_events(0) if e.get("message") == "frontendStarted"]
    status = testing.bird_command(env.fe_socket(0), "show status").text
    assert started[0]["routerId"] == str(birdconf.derive_router_id("fe-0"))
    assert f"Router ID is {started[0]['routerId']}" in status
    assert env.fe_ready(0)
