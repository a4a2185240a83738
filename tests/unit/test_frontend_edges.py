"""The frontend's edges without root: settings → options, the secrets directory, VIP rule planning,
locating a refused gateway in BIRD's error position, and the LB availability client against a real
in-process ``StreamAvailabilityService`` on a unix socket."""
from __future__ import annotations

import asyncio
import ipaddress
import pathlib
import socket
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meridio.api.pb.loadbalancer.v1 import stream_pb2, stream_pb2_grpc
from meridio.bird import birdconf
from meridio.bird.birdconf import BirdConfig, BirdGateway
from meridio.common import settings as settingsmod
from meridio.common.retry import Backoff
from meridio.frontend import app, lbclient, secrets, viprules

ip = ipaddress.ip_address


# --- settings ------------------------------------------------------------------------------------

def test_meridios_defaults_apply_without_any_setting() -> None:
    opts = app.options_from_settings(settingsmod.parse(app.Settings, app.ENV_PREFIX, [], {}), [ip("192.0.2.2")])
    assert (opts.defaults.local_asn, opts.defaults.remote_asn, opts.defaults.local_port,
            opts.defaults.remote_port) == (8103, 4248829953, 10179, 10179)
    assert (opts.base.table_id, opts.base.hold_time_s, opts.base.drop_if_no_peer, opts.base.ecmp) == \
        (4096, 3, True, False)
    assert opts.base.router_id == ipaddress.IPv4Address("192.0.2.2")
    assert opts.refresh_interval_s == 30.0 and opts.base.timers == birdconf.SessionTimers()


def test_nfe_environment_variables_fill_the_options() -> None:
    env = {"NFE_EXTERNAL_INTERFACE": "ext-vlan0", "NFE_ECMP": "true", "NFE_DROP_IF_NO_PEER": "false",
           "NFE_BGP_HOLD_TIME": "9", "NFE_LOG_BIRD": "true", "NFE_NSP_ENTRY_TIMEOUT": "10s",
           "NFE_HOSTNAME": "fe-7", "NFE_BGP_CONNECT_RETRY_TIME": "1", "NFE_BGP_ERROR_WAIT_TIME": "1,2"}
    opts = app.options_from_settings(settingsmod.parse(app.Settings, app.ENV_PREFIX, [], env), [])
    assert opts.base.interface == "ext-vlan0" and opts.base.ecmp and not opts.base.drop_if_no_peer
    assert opts.base.hold_time_s == 9 and opts.base.log_bird and opts.refresh_interval_s == 10.0
    assert opts.hostname == "fe-7" and opts.base.router_id == birdconf.derive_router_id("fe-7")
    assert opts.base.timers == birdconf.SessionTimers(connect_retry_s=1, error_wait_s=(1, 2))


@pytest.mark.parametrize("env, message", [
    ({"NFE_ROUTER_ID": "2001:db8::1"}, "NFE_ROUTER_ID"),
    ({"NFE_VRRPS": "192.0.2.1,nope"}, "NFE_VRRPS"),
    ({"NFE_BGP_ERROR_WAIT_TIME": "1"}, "NFE_BGP_ERROR_WAIT_TIME"),
], ids=["router-id", "vrrps", "error-wait"])
def test_an_unusable_setting_is_refused_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        app.options_from_settings(settingsmod.parse(app.Settings, app.ENV_PREFIX, [], env), [])


# --- secrets ------------------------------------------------------------------------------------

def test_secrets_are_read_per_secret_and_key_like_a_secret_volume(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bgp-auth" / "..2026_11_26").mkdir(parents=True)
    (tmp_path / "bgp-auth" / "..2026_11_26" / "password").write_text("hidden")
    (tmp_path / "bgp-auth" / "password").write_text("s3cret\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "k").write_text("v")
    (tmp_path / "stray-file").write_text("ignored")
    assert secrets.read_secrets(tmp_path) == {"bgp-auth": {"password": "s3cret"}, "other": {"k": "v"}}


def test_a_missing_or_unset_secrets_directory_is_empty(tmp_path: pathlib.Path) -> None:
    assert secrets.read_secrets(tmp_path / "absent") == {} and secrets.read_secrets(None) == {}


async def test_the_secrets_watch_yields_again_only_after_a_change(tmp_path: pathlib.Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "k").write_text("one")
    watch = secrets.watch_secrets(str(tmp_path), interval=0.01)
    assert await anext(watch) == {"s": {"k": "one"}}
    (tmp_path / "s" / "k").write_text("two")
    assert await asyncio.wait_for(anext(watch), 2) == {"s": {"k": "two"}}
    await watch.aclose()


# --- VIP rules and refused gateways ---------------------------------------------------------------

def test_each_vip_gets_a_table_rule_and_a_fallback_rule() -> None:
    rules = viprules.desired_rules([ipaddress.ip_network("203.0.113.10/32"), ipaddress.ip_network("2001:db8::/64")],
                                   4096)
    assert {str(r) for r in rules} == {
        "from 203.0.113.10/32 lookup 4096 priority 100", "from 203.0.113.10/32 lookup 4097 priority 101",
        "from 2001:db8::/64 lookup 4096 priority 100", "from 2001:db8::/64 lookup 4097 priority 101"}
    assert {r.family for r in rules} == {socket.AF_INET, socket.AF_INET6}


def test_birds_error_line_is_mapped_to_the_gateway_whose_protocol_holds_it() -> None:
    cfg = BirdConfig(interface="ext0", router_id=ipaddress.IPv4Address("192.0.2.2"), gateways=(
        BirdGateway("gw-a", ip("192.0.2.1")), BirdGateway("gw-b", ip("192.0.2.3"), hold_time_s=70000)))
    text = birdconf.render(cfg)
    lines = text.splitlines()
    hold = next(i for i, line in enumerate(lines, start=1) if "hold time 70000" in line)
    assert birdconf.gateway_at_line(text, hold) == "gw-b"
    assert birdconf.gateway_at_line(text, hold + 2) == "gw-b"  # the closing brace of its block
    assert birdconf.gateway_at_line(text, 1) is None
    first = next(i for i, line in enumerate(lines, start=1) if "'NBR-gw-a'" in line)
    assert birdconf.gateway_at_line(text, first + 1) == "gw-a"


# --- LB availability client -----------------------------------------------------------------------

class FakeLb(stream_pb2_grpc.StreamAvailabilityServiceServicer):
    """An in-process stand-in for the LB's service, sending the scripted responses then holding the stream."""

    def __init__(self, responses: list[stream_pb2.Response]) -> None:
        self.responses = responses

    async def Watch(self, request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[stream_pb2.Response]:
        for r in self.responses:
            yield r
        await asyncio.Event().wait()


def response(*identifiers: str) -> stream_pb2.Response:
    return stream_pb2.Response(targets=[stream_pb2.Target(context={"identifier": i} if i else {})
                                        for i in identifiers])


async def serve(path: pathlib.Path, lb: FakeLb) -> grpc.aio.Server:
    server = grpc.aio.server()
    stream_pb2_grpc.add_StreamAvailabilityServiceServicer_to_server(lb, server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


async def test_availability_follows_the_target_carrying_our_hostname_without_duplicates(
        tmp_path: pathlib.Path) -> None:
    server = await serve(tmp_path / "lb.sock", FakeLb([response(""), response("fe-0"), response("fe-0"),
                                                       response("fe-1"), response("fe-0")]))
    watch = lbclient.watch_availability(f"unix:{tmp_path / 'lb.sock'}", "fe-0")
    try:
        seen = [await asyncio.wait_for(anext(watch), 5) for _ in range(4)]
    finally:
        await watch.aclose()
        await server.stop(None)
    assert seen == [False, True, False, True]


async def test_an_unreachable_lb_counts_as_unavailable_and_is_retried(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "lb.sock"
    watch = lbclient.watch_availability(f"unix:{path}", "fe-0", backoff=lambda: Backoff(0.05, 0.1))
    assert await asyncio.wait_for(anext(watch), 5) is False
    server = await serve(path, FakeLb([response("fe-0")]))
    try:
        assert await asyncio.wait_for(anext(watch), 5) is True
    finally:
        await watch.aclose()
        await server.stop(None)
