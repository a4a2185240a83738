"""Runtime changes through the NSP, BIRD against BIRD: a change reconfigures BIRD without resetting the
sessions it does not concern (checked with each session's "since" timestamp from the control socket),
and a configuration BIRD refuses is contained.

Real: FE daemon + BIRD, one or two gateway BIRDs, the NSP process (its configuration file is edited).
Test double: the LB's availability service.
"""
from __future__ import annotations

import pathlib

import pytest

from meridio.bird import birdc
from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

VIP4, VIP4B, VIP6 = "203.0.113.10", "203.0.113.11", "2001:db8:f::10"
VIPS = {"vip-v4": f"{VIP4}/32", "vip-v6": f"{VIP6}/128"}


@pytest.fixture
def env(fe_env: FeEnv) -> FeEnv:
    return fe_env


def first_gateways(env: FeEnv) -> list[dict[str, object]]:
    return [gateway_item("gw-v4", env.segment.gw_v4), gateway_item("gw-v6", env.segment.gw_v6)]


def announced(env: FeEnv) -> dict[str, str]:
    env.start_gateway()
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=first_gateways(env)))
    env.start_frontend(0)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 20, message="both VIPs announced")
    return since(env)


def since(env: FeEnv) -> dict[str, str]:
    """When each gateway session of the FE entered its state (BIRD's "since" column)."""
    return {name: p.since for name, p in env.fe_protocols(0).items() if "Established" in p.info}


def gateway_since(socket: pathlib.Path) -> dict[str, str]:
    """When each of the gateway's sessions with the FEs entered its state. Only established sessions count:
    the FE4/FE6 templates are no sessions, and their "since" can move while the first sessions come up."""
    reply = testing.bird_command(socket, "show protocols")
    return {p.name: p.since for p in birdc.protocols(reply) if p.name.startswith("FE") and "Established" in p.info}


def test_adding_a_vip_announces_it_without_resetting_any_session(env: FeEnv) -> None:
    before, gw_before = announced(env), gateway_since(env.gw_socket)
    assert set(before) == {"NBR-gw-v4", "NBR-gw-v6"}
    assert len(gw_before) == 2, gw_before  # the gateway's dynamic sessions with the FE, v4 and v6

    env.write_nsp_config(testing.nsp_config(vips={**VIPS, "vip-v4b": f"{VIP4B}/32"}, gateways=first_gateways(env)))
    eventually(lambda: env.gw_nexthops(VIP4B) == {env.segment.fe_v4(0)}, 10, message="the new VIP at the gateway")

    assert since(env) == before
    assert gateway_since(env.gw_socket) == gw_before


def test_adding_and_removing_a_second_gateway_leaves_the_first_sessions_untouched(env: FeEnv) -> None:
    before = announced(env)
    env.start_second_gateway()
    fe = env.segment.fe_nss[0]
    more = [*first_gateways(env), gateway_item("gw-b-v4", env.SECOND_GW_V4)]

    env.write_nsp_config(testing.nsp_config(vips=VIPS, gateways=more))
    eventually(lambda: env.established(0, "gw-b-v4"), 20, message="the second gateway's session")
    eventually(lambda: testing.nexthops(testing.kernel_route(fe, "default", 4096)) ==
               {env.segment.gw_v4, env.SECOND_GW_V4}, 10, message="an ECMP default via both gateways in 4096")
    eventually(lambda: testing.nexthops(testing.kernel_route(env.gw2_ns, VIP4)) == {env.segment.fe_v4(0)}, 10,
               message="the second gateway learns the VIP")
    assert {k: v for k, v in since(env).items() if k != "NBR-gw-b-v4"} == before

    env.write_nsp_config(testing.nsp_config(vips=VIPS, gateways=first_gateways(env)))
    eventually(lambda: "NBR-gw-b-v4" not in env.fe_protocols(0), 10, message="the second gateway removed")
    eventually(lambda: testing.nexthops(testing.kernel_route(fe, "default", 4096)) == {env.segment.gw_v4}, 10,
               message="the default via the first gateway only")
    assert since(env) == before
    assert env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6)


def test_a_gateway_bird_refuses_is_left_out_the_rest_applies_and_the_fe_is_not_ready(env: FeEnv) -> None:
    env.start_gateway()
    bad = gateway_item("gw-bad", "192.0.2.200", hold_time=70000)
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[*first_gateways(env), bad]))
    env.start_frontend(0)
    env.lbs[0].set_available(True)
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 20, message="VIPs announced")

    events = env.fe_events(0)
    refused = [e for e in events if e.get("message") == "birdConfigRefused"]
    assert refused and "Hold time must be in range 3-65535 or zero" in refused[0]["error"]
    assert [e["gateway"] for e in events if e.get("message") == "gatewayRefused"] == ["gw-bad"]
    assert "NBR-gw-bad" not in env.fe_protocols(0)
    assert not env.fe_ready(0)

    env.write_nsp_config(testing.nsp_config(vips=VIPS, gateways=first_gateways(env)))
    eventually(lambda: env.fe_ready(0), 10, message="ready once the bad gateway is gone")
