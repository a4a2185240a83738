"""From the NSP attractor (+ local secrets) to the desired BIRD configuration, and the announce rule."""
from __future__ import annotations

import ipaddress

import pytest

from meridio.api import model
from meridio.bird.birdconf import Bfd, BirdConfig, GatewayProtocol
from meridio.frontend import announce, desired

BASE = BirdConfig(interface="ext0", router_id=ipaddress.IPv4Address("192.0.2.2"))
TRENCH = model.Trench("trench-a")
SECRETS = {"bgp-auth": {"password": "s3cr3t"}}


def gw(name: str = "gw1", address: str = "192.0.2.1", **kw: object) -> model.Gateway:
    return model.Gateway(name=name, address=address, trench=TRENCH, **kw)  # type: ignore[arg-type]


def attractor(vips: tuple[str, ...] = ("203.0.113.10/32",), gws: tuple[model.Gateway, ...] = ()) -> model.Attractor:
    return model.Attractor("attr-a", TRENCH, tuple(model.Vip(f"vip{i}", a, TRENCH) for i, a in enumerate(vips)),
                           gws or (gw(),))


def test_zero_asns_and_ports_take_the_frontends_defaults() -> None:
    g = desired.gateway_from_model(gw(), desired.GatewayDefaults(), {})
    assert (g.local_asn, g.remote_asn, g.local_port, g.remote_port) == (8103, 4248829953, 10179, 10179)
    assert g.protocol is GatewayProtocol.BGP and g.hold_time_s == 0 and g.bfd is None


def test_explicit_gateway_fields_win_over_defaults() -> None:
    g = desired.gateway_from_model(
        gw(local_asn=65001, remote_asn=65002, local_port=179, remote_port=1179, hold_time=24, bfd=True,
           bfd_spec=model.BfdSpec(min_tx=50, min_rx=60, multiplier=3)), desired.GatewayDefaults(), {})
    assert (g.local_asn, g.remote_asn, g.local_port, g.remote_port, g.hold_time_s) == (65001, 65002, 179, 1179, 24)
    assert g.bfd == Bfd(min_rx_ms=60, min_tx_ms=50, multiplier=3)


def test_the_md5_password_comes_from_the_named_secret_key() -> None:
    g = desired.gateway_from_model(gw(bgp_auth=model.BgpAuth("password", "bgp-auth")), desired.GatewayDefaults(),
                                   SECRETS)
    assert g.password == "s3cr3t"


@pytest.mark.parametrize("auth, message", [
    (model.BgpAuth("password", "missing"), "key-source: secret 'missing' not found"),
    (model.BgpAuth("nokey", "bgp-auth"), "key-name: secret 'bgp-auth' has no key 'nokey'"),
], ids=["no-secret", "no-key"])
def test_a_gateway_whose_secret_cannot_be_loaded_is_skipped_with_the_reason(auth: model.BgpAuth,
                                                                            message: str) -> None:
    good = gw("gw-good", "192.0.2.3")
    d = desired.desired(BASE, attractor(gws=(gw(bgp_auth=auth), good)), SECRETS)
    assert [g.name for g in d.bird.gateways] == ["gw-good"]
    (skipped,) = d.skipped
    assert skipped.kind == "gateway" and skipped.name == "gw1" and message in skipped.error


@pytest.mark.parametrize("bad, message", [
    (gw(address="192.0.2"), "address '192.0.2': invalid IP format"),
    (gw(protocol="ospf"), "protocol 'ospf': must be bgp or static"),
    (gw(bfd=True), "bfd: min-rx and min-tx must be at least 1ms"),
    (gw(name="bad name"), "gateway name 'bad name'"),
], ids=["address", "protocol", "bfd-without-timers", "name"])
def test_a_gateway_bird_cannot_use_is_skipped_naming_the_field(bad: model.Gateway, message: str) -> None:
    d = desired.desired(BASE, attractor(gws=(bad,)), {})
    assert d.bird.gateways == ()
    assert message in d.skipped[0].error


def test_a_static_gateway_ignores_bgp_auth() -> None:
    g = desired.gateway_from_model(gw(protocol="static", bgp_auth=model.BgpAuth("x", "nope")),
                                   desired.GatewayDefaults(), {})
    assert g.protocol is GatewayProtocol.STATIC and g.password is None


def test_vips_are_sorted_v4_first_deduplicated_and_invalid_ones_skipped() -> None:
    d = desired.desired(BASE, attractor(vips=("2001:db8:f::10/128", "203.0.113.11/32", "203.0.113.10/32",
                                              "203.0.113.10/32", "203.0.113.1/24")), {}, advertise=True)
    assert [str(v) for v in d.vips] == ["203.0.113.10/32", "203.0.113.11/32", "2001:db8:f::10/128"]
    assert d.skipped[0].kind == "vip" and "must be a valid network prefix" in d.skipped[0].error


def test_vips_are_advertised_only_when_asked_and_present() -> None:
    assert desired.desired(BASE, attractor(), {}, advertise=True).bird.advertise_vips
    assert not desired.desired(BASE, attractor(), {}, advertise=False).bird.advertise_vips
    assert not desired.desired(BASE, attractor(vips=()), {}, advertise=True).bird.advertise_vips


def test_without_an_attractor_the_config_has_no_vips_and_no_gateways() -> None:
    d = desired.desired(BASE, None, {}, advertise=True)
    assert (d.bird.vips, d.bird.gateways, d.bird.advertise_vips) == ((), (), False)


@pytest.mark.parametrize("connectivity, available, has_vips, announce_, reason", [
    (True, True, True, True, announce.Reason.SERVING),
    (False, True, True, False, announce.Reason.NO_CONNECTIVITY),
    (True, False, True, False, announce.Reason.NO_TARGETS),
    (False, False, True, False, announce.Reason.NO_CONNECTIVITY),
    (True, True, False, False, announce.Reason.NO_VIPS),
], ids=["serving", "no-connectivity", "no-targets", "neither", "no-vips"])
def test_vips_are_announced_only_with_connectivity_and_lb_targets(connectivity: bool, available: bool,
                                                                   has_vips: bool, announce_: bool,
                                                                   reason: announce.Reason) -> None:
    assert announce.decide(connectivity=connectivity, lb_available=available, has_vips=has_vips) == \
        announce.Decision(announce_, reason)


def test_lb_availability_is_a_target_identified_by_our_hostname() -> None:
    assert announce.lb_available([{"identifier": "fe-0"}], "fe-0")
    assert not announce.lb_available([{"identifier": "fe-1"}], "fe-0")
    assert not announce.lb_available([{}], "fe-0")
    assert not announce.lb_available([], "fe-0")


def test_the_frontend_target_is_a_frontend_type_identified_by_hostname_without_stream() -> None:
    t = announce.frontend_target("fe-0")
    assert (t.ips, t.identifier, t.type, t.stream) == (("fe-0",), "fe-0", model.TargetType.FRONTEND, None)
