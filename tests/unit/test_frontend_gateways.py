"""Gateway supervision: per-gateway health from BIRD's protocol/BFD state, connectivity per IP family,
and the tracker's changes and error counting."""
from __future__ import annotations

import ipaddress
import pathlib

import pytest

from meridio.bird import birdc
from meridio.bird.birdc import BfdSession, ProtocolInfo
from meridio.bird.birdconf import Bfd, BirdGateway, GatewayProtocol
from meridio.frontend import gateways
from meridio.frontend.gateways import Reason

ip = ipaddress.ip_address
V4 = BirdGateway("gw-v4", ip("192.0.2.1"))
V4B = BirdGateway("gw-v4b", ip("192.0.2.3"))
V6 = BirdGateway("gw-v6", ip("2001:db8:e::1"))
ST = BirdGateway("gw-static", ip("192.0.2.1"), protocol=GatewayProtocol.STATIC, bfd=Bfd(100, 100, 3))
ST_PLAIN = BirdGateway("gw-plain", ip("192.0.2.9"), protocol=GatewayProtocol.STATIC)


def proto(name: str, state: str = "up", info: str = "Established", kind: str = "BGP") -> ProtocolInfo:
    return ProtocolInfo(name, kind, "---", state, "10:00:00.000", info)


def bfd(address: str, state: str = "Up", interface: str = "ext0") -> BfdSession:
    return BfdSession("NBR-BFD", address, interface, state, "10:00:00.000", 0.1, 0.3)


def test_an_established_bgp_gateway_is_up() -> None:
    a = gateways.assess([V4], [proto("NBR-gw-v4")], [], "ext0")
    assert a.gateways[0].up and a.connectivity and a.reason is Reason.CONNECTED


@pytest.mark.parametrize("protocols, reason, detail", [
    ([], Reason.PROTOCOL_MISSING, ""),
    ([proto("NBR-gw-v4", "start", "Active        Socket: Connection refused")], Reason.PROTOCOL_NOT_UP,
     "start Active Socket: Connection refused"),
    ([proto("NBR-gw-v4", "up", "OpenSent")], Reason.BGP_NOT_ESTABLISHED, "OpenSent"),
], ids=["missing", "start", "up-but-not-established"])
def test_a_bgp_gateway_is_down_unless_up_and_established(protocols: list[ProtocolInfo], reason: Reason,
                                                          detail: str) -> None:
    health = gateways.assess([V4], protocols, [], "ext0").gateways[0]
    assert (health.up, health.reason, health.detail) == (False, reason, detail)


def test_a_static_bfd_gateway_needs_its_bfd_session_up_on_the_external_interface() -> None:
    protos = [proto("NBR-gw-static", info="", kind="Static")]
    assert gateways.assess([ST], protos, [bfd("192.0.2.1")], "ext0").connectivity
    assert not gateways.assess([ST], protos, [bfd("192.0.2.1", "Down")], "ext0").connectivity
    assert not gateways.assess([ST], protos, [bfd("192.0.2.1", interface="other")], "ext0").connectivity
    assert gateways.assess([ST], protos, [], "ext0").gateways[0].reason is Reason.BFD_DOWN


def test_a_static_gateway_without_bfd_is_up_when_its_protocol_is() -> None:
    assert gateways.assess([ST_PLAIN], [proto("NBR-gw-plain", info="", kind="Static")], [], "ext0").connectivity


def test_no_gateway_means_no_connectivity() -> None:
    a = gateways.assess([], [], [], "ext0")
    assert (a.connectivity, a.reason) == (False, Reason.NO_GATEWAYS)


@pytest.mark.parametrize("up, connectivity", [
    ({"NBR-gw-v4", "NBR-gw-v6"}, True),
    ({"NBR-gw-v4b", "NBR-gw-v6"}, True),
    ({"NBR-gw-v4", "NBR-gw-v4b"}, False),
    ({"NBR-gw-v6"}, False),
], ids=["both-families", "one-of-two-v4-suffices", "v6-family-down", "v4-family-down"])
def test_connectivity_needs_one_up_gateway_in_every_configured_family(up: set[str], connectivity: bool) -> None:
    protos = [proto(g.protocol_name, info="Established" if g.protocol_name in up else "Active")
              for g in (V4, V4B, V6)]
    assert gateways.assess([V4, V4B, V6], protos, [], "ext0").connectivity is connectivity


def test_bfd_sessions_are_queried_only_for_static_bfd_gateways() -> None:
    assert not gateways.needs_bfd_sessions([V4, V6, ST_PLAIN])
    assert gateways.needs_bfd_sessions([V4, ST])


def test_the_captured_bird_state_assesses_the_unreachable_gateway_down() -> None:
    raw = (pathlib.Path(__file__).parent / "golden/bird/replies/show_protocols_all_nbr.txt").read_bytes()
    reply = [e for e in birdc.ReplyParser().feed(raw) if isinstance(e, birdc.Reply)][1]
    gws = [BirdGateway("gw-v4", ip("192.0.2.1")), BirdGateway("gw-v6", ip("2001:db8:e::1")),
           BirdGateway("gw-absent", ip("192.0.2.77"))]
    a = gateways.assess(gws, birdc.protocols(reply), [], "ext0")
    assert [(g.name, g.up) for g in a.gateways] == [("gw-v4", True), ("gw-v6", True), ("gw-absent", False)]
    assert a.connectivity


def assessment(*up: bool) -> gateways.Assessment:
    gws = [BirdGateway(f"gw{i}", ip(f"192.0.2.{i + 1}")) for i in range(len(up))]
    protos = [proto(g.protocol_name, info="Established" if u else "Active") for g, u in zip(gws, up)]
    return gateways.assess(gws, protos, [], "ext0")


def test_the_tracker_reports_gateway_and_connectivity_changes_once() -> None:
    t = gateways.Tracker()
    assert [c.event for c in t.observe(assessment(True, False))] == ["gatewayUp", "connectivityUp"]
    assert t.observe(assessment(True, False)) == []
    changes = t.observe(assessment(False, False))
    assert [(c.event, c.gateway) for c in changes] == [("gatewayDown", "gw0"), ("connectivityDown", "")]
    assert changes[0].reason == "bgpNotEstablished"


def test_a_gateway_first_seen_down_is_not_reported_as_a_change() -> None:
    assert gateways.Tracker().observe(assessment(False)) == []


def test_more_than_max_errors_query_failures_in_a_row_drop_connectivity() -> None:
    t = gateways.Tracker(max_errors=2)
    t.observe(assessment(True))
    assert t.observe_error("timeout") == [] and t.observe_error("timeout") == []
    (change,) = t.observe_error("timeout")
    assert (change.event, change.reason, t.connectivity) == ("connectivityDown", "birdQueryErrors", False)


def test_a_successful_query_resets_the_error_count() -> None:
    t = gateways.Tracker(max_errors=2)
    t.observe(assessment(True))
    t.observe_error("x")
    t.observe_error("x")
    t.observe(assessment(True))
    assert t.observe_error("x") == [] and t.connectivity


def test_a_bird_restart_forgets_everything_known_up() -> None:
    t = gateways.Tracker()
    t.observe(assessment(True))
    assert [c.event for c in t.reset("birdRestarted")] == ["connectivityDown"]
    assert [c.event for c in t.observe(assessment(True))] == ["gatewayUp", "connectivityUp"]
