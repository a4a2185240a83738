"""The frontend daemon against a real gateway BIRD, in network namespaces, IPv4 and IPv6.

Real: the FE daemon (``meridio run frontend``) and its BIRD in the FE namespace, a gateway BIRD in the
gateway namespace (dynamic peers, BFD, default route), the NSP process, the kernel's routes and rules.
Test double: the LB's ``StreamAvailabilityService`` (``LbAvailabilityDouble``), flipped by the test.
"""
from __future__ import annotations

import os
import pathlib
import signal

import pytest

from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

VIP4, VIP6 = "203.0.113.10", "2001:db8:f::10"
VIPS = {"vip-v4": f"{VIP4}/32", "vip-v6": f"{VIP6}/128"}


@pytest.fixture
def env(fe_env: FeEnv) -> FeEnv:
    return fe_env


def dualstack(env: FeEnv) -> None:
    env.start_gateway()
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4), gateway_item("gw-v6", env.segment.gw_v6)]))
    env.start_frontend(0)
    eventually(lambda: env.established(0, "gw-v4", "gw-v6"), 20, message="both BGP sessions Established")


def test_the_gateway_learns_the_vips_only_while_the_lb_has_a_target(env: FeEnv) -> None:
    dualstack(env)
    fe4, fe6 = env.segment.fe_v4(0), env.segment.fe_v6(0)
    eventually(lambda: env.frontend_targets() == ["fe-0"], 10, message="the FE registered (it has connectivity)")
    assert env.gw_nexthops(VIP4) == set() and env.gw_nexthops(VIP6) == set()

    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) == {fe4} and env.gw_nexthops(VIP6) == {fe6}, 10,
               message="both VIPs routed via the FE at the gateway")

    env.lbs[0].set_available(False)
    eventually(lambda: not env.gw_nexthops(VIP4) and not env.gw_nexthops(VIP6), 10, message="VIPs withdrawn")

    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) == {fe4} and env.gw_nexthops(VIP6) == {fe6}, 10,
               message="VIPs announced again")


def test_the_fe_routes_vip_sourced_egress_via_the_gateways_with_a_blackhole_fallback(env: FeEnv) -> None:
    dualstack(env)
    fe = env.segment.fe_nss[0]
    eventually(lambda: testing.nexthops(testing.kernel_route(fe, "default", 4096)) == {env.segment.gw_v4}, 10,
               message="IPv4 default via the gateway in table 4096")
    eventually(lambda: testing.nexthops(testing.kernel_route(fe, "::/0", 4096)) == {env.segment.gw_v6}, 10,
               message="IPv6 default via the gateway in table 4096")
    assert testing.kernel_route(fe, "default", 4097)[0]["type"] == "blackhole"
    assert testing.kernel_route(fe, "::/0", 4097)[0]["type"] == "blackhole"
    rules = testing.netnsmod.run(fe, ["ip", "rule"]).stdout + testing.netnsmod.run(fe, ["ip", "-6", "rule"]).stdout
    assert f"100:\tfrom {VIP4} lookup 4096" in rules and f"101:\tfrom {VIP4} lookup 4097" in rules
    assert f"100:\tfrom {VIP6} lookup 4096" in rules and f"101:\tfrom {VIP6} lookup 4097" in rules


def test_sigterm_withdraws_removes_rules_unregisters_stops_bird_and_exits_0(env: FeEnv) -> None:
    dualstack(env)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) and env.frontend_targets() == ["fe-0"], 10,
               message="announced and registered")
    assert env.fe_ready(0)
    bird_pid = env.fe_bird_pid(0)

    assert env.procs.stop(env.frontends[0]) == 0
    assert not env.gw_nexthops(VIP4)
    eventually(lambda: not env.gw_nexthops(VIP6), 5, message="the IPv6 VIP withdrawn")
    assert env.frontend_targets() == []
    fe = env.segment.fe_nss[0]
    assert VIP4 not in testing.netnsmod.run(fe, ["ip", "rule"]).stdout
    assert VIP6 not in testing.netnsmod.run(fe, ["ip", "-6", "rule"]).stdout
    assert not os.path.exists(f"/proc/{bird_pid}"), "the FE's BIRD outlived the FE"


def test_killed_bird_is_restarted_and_the_vips_come_back(env: FeEnv) -> None:
    dualstack(env)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4), 10, message="announced")
    old = env.fe_bird_pid(0)
    os.kill(old, signal.SIGKILL)
    eventually(lambda: not env.gw_nexthops(VIP4), 10, message="withdrawn when BIRD died")
    eventually(lambda: env.fe_bird_pid(0) != old, 10, message="a new BIRD")
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 20, message="announced again")
    assert any(e.get("message") == "birdExited" for e in env.fe_events(0))


def test_a_frontend_killed_with_sigkill_leaves_no_bird_behind(env: FeEnv) -> None:
    dualstack(env)
    bird_pid = env.fe_bird_pid(0)
    env.procs.stop(env.frontends[0], sig=signal.SIGKILL)
    eventually(lambda: not os.path.exists(f"/proc/{bird_pid}") or
               pathlib.Path(f"/proc/{bird_pid}/stat").read_text().split()[2] == "Z", 5,
               message="BIRD gone with its parent (PR_SET_PDEATHSIG)")
