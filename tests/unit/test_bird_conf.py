"""bird.conf rendering: golden files (each also accepted by the real ``bird -p``) and the properties that
keep runtime changes local (one VIP or gateway changes only its own protocol's text).

Regenerate the golden files after an intended change with ``MERIDIO_UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from meridio.bird import birdconf, gatewayconf
from meridio.bird.birdconf import Bfd, BirdConfig, BirdGateway, GatewayProtocol, SessionTimers

GOLDEN = pathlib.Path(__file__).parent / "golden" / "bird"
UPDATE = os.environ.get("MERIDIO_UPDATE_GOLDEN") == "1"

ip = ipaddress.ip_address
net = ipaddress.ip_network
RID = ipaddress.IPv4Address("192.0.2.2")
VIP4, VIP4B, VIP6 = net("203.0.113.10/32"), net("203.0.113.11/32"), net("2001:db8:f::10/128")
GW4 = BirdGateway("gateway-v4", ip("192.0.2.1"), bfd=Bfd(50, 50, 3), password="s3cr3t-k3y", hold_time_s=24)
GW6 = BirdGateway("gateway-v6", ip("2001:db8:e::1"), bfd=Bfd(50, 50, 3), password="s3cr3t-k3y", hold_time_s=24)
ST4 = BirdGateway("static-v4", ip("192.0.2.1"), protocol=GatewayProtocol.STATIC, bfd=Bfd(300, 300, 5))
ST6 = BirdGateway("static-v6", ip("2001:db8:e::1"), protocol=GatewayProtocol.STATIC, bfd=Bfd(100, 200, 3))
FAST = SessionTimers(connect_retry_s=1, error_wait_s=(1, 2), connect_delay_s=1)

FE_CASES = {
    "fe_startup_no_attractor": BirdConfig(interface="ext-vlan0", router_id=RID),
    "fe_dualstack_bgp_bfd_md5_announced": BirdConfig(
        interface="ext-vlan0", router_id=RID, vips=(VIP4, VIP4B, VIP6), gateways=(GW4, GW6), advertise_vips=True,
        ecmp=True),
    "fe_dualstack_bgp_withdrawn": BirdConfig(
        interface="ext-vlan0", router_id=RID, vips=(VIP4, VIP4B, VIP6), gateways=(GW4, GW6), advertise_vips=False,
        ecmp=True),
    "fe_static_bfd_gateways": BirdConfig(
        interface="ext-vlan0", router_id=RID, vips=(VIP4, VIP6), gateways=(ST4, ST6), advertise_vips=True),
    "fe_ipv6_only_hashed_router_id": BirdConfig(
        interface="ext0", router_id=birdconf.derive_router_id("fe-0", [ip("2001:db8:e::2")]), vips=(VIP6,),
        gateways=(BirdGateway("gw6", ip("2001:db8:e::1")),), advertise_vips=True, ecmp=True),
    "fe_vrrp_default_routes": BirdConfig(
        interface="ext0", router_id=RID, vips=(VIP4,), gateways=(BirdGateway("gw4", ip("192.0.2.1")),),
        advertise_vips=True, vrrps=(ip("192.0.2.253"), ip("2001:db8:e::fd"))),
    "fe_test_timers_no_drop_log_bird": BirdConfig(
        interface="ext0", router_id=RID, vips=(VIP4,), gateways=(BirdGateway("gw4", ip("192.0.2.1"), local_asn=65001,
                                                                             remote_asn=65002, local_port=179,
                                                                             remote_port=179),),
        advertise_vips=True, drop_if_no_peer=False, log_bird=True, log_file="/run/meridio/fe/bird.log",
        hold_time_s=9, timers=FAST),
}

GW_CASES = {
    "gw_dualstack_dynamic_bfd_md5": gatewayconf.GatewayRouterConfig(
        interface="ext0", router_id=ipaddress.IPv4Address("192.0.2.1"),
        peer_ranges=(net("192.0.2.0/24"), net("2001:db8:e::/64")), bfd=Bfd(50, 50, 3), password="s3cr3t-k3y",
        timers=FAST),
    "gw_static_vip_routes_no_bgp": gatewayconf.GatewayRouterConfig(
        interface="ext0", router_id=ipaddress.IPv4Address("192.0.2.1"), bfd=Bfd(50, 50, 3), announce_default=False,
        static_routes=(gatewayconf.StaticRoute(VIP4, (ip("192.0.2.2"), ip("192.0.2.3"))),
                       gatewayconf.StaticRoute(VIP6, (ip("2001:db8:e::2"),))),
        kernel_table=100, log_file="/run/meridio/gw/bird.log"),
}


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.conf"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{path.name} differs from the rendering (MERIDIO_UPDATE_GOLDEN=1 to update)"


@pytest.mark.parametrize("name", sorted(FE_CASES))
def test_frontend_rendering_matches_its_golden_file(name: str) -> None:
    _check_golden(name, birdconf.render(FE_CASES[name]))


@pytest.mark.parametrize("name", sorted(GW_CASES))
def test_gateway_rendering_matches_its_golden_file(name: str) -> None:
    _check_golden(name, gatewayconf.render(GW_CASES[name]))


@pytest.mark.parametrize("name", sorted([*FE_CASES, *GW_CASES]))
def test_golden_file_is_accepted_by_the_real_bird_parser(name: str) -> None:
    bird = shutil.which("bird") or "/usr/sbin/bird"
    assert os.path.exists(bird), "BIRD 2 is required (./run.sh setup installs bird2)"
    result = subprocess.run([bird, "-p", "-c", str(GOLDEN / f"{name}.conf")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def blocks(text: str) -> dict[str, str]:
    """Top-level statements of a rendered config keyed by their header line."""
    out: dict[str, str] = {}
    for chunk in re.split(r"\n(?=\S)", text):
        head = chunk.splitlines()[0]
        out[head] = chunk
    return out


def changed_blocks(before: BirdConfig, after: BirdConfig) -> set[str]:
    a, b = blocks(birdconf.render(before)), blocks(birdconf.render(after))
    return {head for head in a.keys() | b.keys() if a.get(head) != b.get(head)}


BASE = FE_CASES["fe_dualstack_bgp_bfd_md5_announced"]


def test_adding_a_vip_changes_only_the_vip_protocol_of_its_family() -> None:
    after = BirdConfig(**{**BASE.__dict__, "vips": (*BASE.vips, net("203.0.113.12/32"))})
    assert changed_blocks(BASE, after) == {"protocol static VIP4 {"}


def test_adding_a_gateway_adds_its_protocol_and_leaves_the_other_gateways_untouched() -> None:
    extra = BirdGateway("gateway-2", ip("192.0.2.3"), bfd=Bfd(50, 50, 3))
    after = BirdConfig(**{**BASE.__dict__, "gateways": (*BASE.gateways, extra)})
    assert changed_blocks(BASE, after) == {"protocol bgp 'NBR-gateway-2' from LINK4 {"}


def test_removing_a_gateway_removes_only_its_protocol() -> None:
    after = BirdConfig(**{**BASE.__dict__, "gateways": (GW6,)})
    assert changed_blocks(BASE, after) == {"protocol bgp 'NBR-gateway-v4' from LINK4 {"}


def test_withdrawing_removes_only_the_vip_protocols() -> None:
    after = BirdConfig(**{**BASE.__dict__, "advertise_vips": False})
    assert changed_blocks(BASE, after) == {"protocol static VIP4 {", "protocol static VIP6 {"}


def test_kernel_export_is_none_for_a_family_without_vips() -> None:
    text = birdconf.render(BirdConfig(**{**BASE.__dict__, "vips": (VIP4,)}))
    kernel6 = blocks(text)["protocol kernel kernel6 {"]
    assert "export none;" in kernel6
    assert "export filter cluster_breakout;" in blocks(text)["protocol kernel kernel4 {"]


def test_drop_if_no_peer_blackholes_only_families_with_vips_into_the_next_table() -> None:
    text = birdconf.render(BirdConfig(**{**BASE.__dict__, "vips": (VIP6,), "table_id": 5000}))
    assert "protocol static DROP6 {" in text and "DROP4" not in text
    assert "kernel table 5001;" in blocks(text)["protocol kernel kernel_drop6 {"]


def test_bfd_protocol_is_rendered_only_when_a_gateway_uses_bfd() -> None:
    plain = BirdConfig(interface="ext0", router_id=RID, gateways=(BirdGateway("gw", ip("192.0.2.1")),))
    assert "protocol bfd" not in birdconf.render(plain)
    assert "protocol bfd 'NBR-BFD' {" in birdconf.render(BASE)


@pytest.mark.parametrize("password, rule", [
    ('a"b', "double quote"), ("a\nb", "newline"), ("x" * 81, "1-80 characters"), ("", "1-80 characters"),
], ids=["quote", "newline", "too-long", "empty"])
def test_an_unrenderable_password_is_refused_naming_the_field_and_rule(password: str, rule: str) -> None:
    with pytest.raises(birdconf.ConfigError, match=f"bgp password: .*{rule}"):
        BirdGateway("gw", ip("192.0.2.1"), password=password)


@pytest.mark.parametrize("name", ["a b", "a/b", "x" * 61, ""], ids=["space", "slash", "too-long", "empty"])
def test_a_gateway_name_bird_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(birdconf.ConfigError, match="gateway name"):
        BirdGateway(name, ip("192.0.2.1"))


@pytest.mark.parametrize("field", ["local_asn", "remote_asn", "local_port", "remote_port"])
def test_a_zero_asn_or_port_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(birdconf.ConfigError, match=field.replace("_", "-")):
        BirdGateway("gw", ip("192.0.2.1"), **{field: 0})  # type: ignore[arg-type]


def test_router_id_is_the_lowest_ipv4_address_when_there_is_one() -> None:
    rid = birdconf.derive_router_id("fe-0", [ip("2001:db8::1"), ip("192.0.2.9"), ip("192.0.2.3")])
    assert rid == ipaddress.IPv4Address("192.0.2.3")


def test_router_id_without_ipv4_is_a_stable_hash_of_the_seed() -> None:
    a = birdconf.derive_router_id("fe-0", [ip("2001:db8::1")])
    assert a == birdconf.derive_router_id("fe-0", [])
    assert a != birdconf.derive_router_id("fe-1", [])
    assert a not in (ipaddress.IPv4Address(0), ipaddress.IPv4Address(2**32 - 1))
