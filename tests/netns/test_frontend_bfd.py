"""BFD supervision, BIRD against BIRD in network namespaces (50 ms x 3).

Real: the FE daemon and its BIRD, a gateway BIRD, the NSP, nftables (to drop the FE's packets).
Test double: the LB's availability service. Detection *times* are measured in ``bench/fe_timings.py``; here
the tests check that the withdrawal happens and that BFD (not the BGP hold timer) caused it.
"""
from __future__ import annotations

import ipaddress
import os
import signal

import pytest

from meridio.bird import gatewayconf
from meridio.bird.birdconf import Bfd
from meridio.kernel import netns as netnsmod
from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

VIP4, VIP6 = "203.0.113.10", "2001:db8:f::10"
VIPS = {"vip-v4": f"{VIP4}/32", "vip-v6": f"{VIP6}/128"}
DROP_EXT0 = """
table inet fe_test_drop {
    chain in { type filter hook input priority -300; iifname "ext0" drop; }
    chain out { type filter hook output priority -300; oifname "ext0" drop; }
}
"""


@pytest.fixture
def env(fe_env: FeEnv) -> FeEnv:
    return fe_env


def announced(env: FeEnv) -> None:
    env.start_gateway(testing.gateway_config(env.segment, hold_time_s=30))
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4, hold_time=30), gateway_item("gw-v6", env.segment.gw_v6,
                                                                              hold_time=30)]))
    env.start_frontend(0)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 20, message="both VIPs announced")
    # BIRD ties a BGP session to BFD only once the BFD session has been Up.
    eventually(lambda: env.gw_bfd_up() == {env.segment.fe_v4(0), env.segment.fe_v6(0)}, 10,
               message="both BFD sessions Up at the gateway")


def gateway_saw_bfd_down(env: FeEnv) -> bool:
    log = env.procs.output(env.gateway)
    return "FE4_1: BFD session down" in log and "FE6_1: BFD session down" in log


def test_freezing_the_fe_bird_makes_the_gateway_withdraw_the_vips_on_bfd_timeout(env: FeEnv) -> None:
    announced(env)
    pid = env.fe_bird_pid(0)
    os.kill(pid, signal.SIGSTOP)
    try:
        # A 30 s hold time: only BFD can withdraw within the 5 s allowed here.
        eventually(lambda: not env.gw_nexthops(VIP4) and not env.gw_nexthops(VIP6), 5,
                   message="the gateway withdrew both VIPs")
        assert gateway_saw_bfd_down(env)
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 30, message="VIPs announced again")


def test_dropping_the_fe_packets_makes_the_gateway_withdraw_the_vips(env: FeEnv) -> None:
    announced(env)
    fe = env.segment.fe_nss[0]
    netnsmod.run(fe, ["nft", "-f", "-"], input=DROP_EXT0)
    try:
        eventually(lambda: not env.gw_nexthops(VIP4) and not env.gw_nexthops(VIP6), 5,
                   message="the gateway withdrew both VIPs")
        assert gateway_saw_bfd_down(env)
    finally:
        netnsmod.run(fe, ["nft", "delete", "table", "inet", "fe_test_drop"])
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 30, message="VIPs announced again")


def test_a_static_bfd_default_route_comes_and_goes_with_the_gateway(env: FeEnv) -> None:
    seg = env.segment
    fe_ips = (ipaddress.ip_address(seg.fe_v4(0)), ipaddress.ip_address(seg.fe_v6(0)))
    gw_cfg = testing.gateway_config(seg, families=(), bfd=Bfd(50, 50, 3), announce_default=False, static_routes=(
        gatewayconf.StaticRoute(ipaddress.ip_network(f"{VIP4}/32"), (fe_ips[0],)),
        gatewayconf.StaticRoute(ipaddress.ip_network(f"{VIP6}/128"), (fe_ips[1],))))
    gw = env.start_gateway(gw_cfg)
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("st-v4", seg.gw_v4, protocol="static"), gateway_item("st-v6", seg.gw_v6, protocol="static")]))
    env.start_frontend(0)
    fe = seg.fe_nss[0]

    def defaults() -> tuple[set[str], set[str]]:
        return (testing.nexthops(testing.kernel_route(fe, "default", 4096)),
                testing.nexthops(testing.kernel_route(fe, "::/0", 4096)))

    eventually(lambda: defaults() == ({seg.gw_v4}, {seg.gw_v6}), 15, message="static+BFD defaults in table 4096")
    eventually(env.fe_ready, 10, message="the FE ready (static gateways up)")
    os.kill(gw.pid, signal.SIGSTOP)
    try:
        eventually(lambda: defaults() == (set(), set()), 5, message="the defaults removed when BFD goes down")
        eventually(lambda: not env.fe_ready(), 10, message="the FE not ready without gateways")
    finally:
        os.kill(gw.pid, signal.SIGCONT)
    eventually(lambda: defaults() == ({seg.gw_v4}, {seg.gw_v6}), 10, message="the defaults back with BFD")
    eventually(env.fe_ready, 10, message="the FE ready again")
