"""Parsing flows, port NATs and targets at the edge: one table per codec, Meridio's error wording."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meridio.api import model
from meridio.loadbalancer import flows as fl

STREAM = model.Stream("s", model.Conduit("c", model.Trench("t")), 100)


@pytest.mark.parametrize("text, expected", [
    ("80", fl.PortRange(80, 80)), ("4000-4010", fl.PortRange(4000, 4010)), ("any", fl.PortRange(0, 65535)),
    ("0-65535", fl.PortRange(0, 65535)), ("65535", fl.PortRange(65535, 65535)),
], ids=["single", "range", "any", "full-range", "max"])
def test_port_ranges_parse_as_meridio_writes_them(text: str, expected: fl.PortRange) -> None:
    assert fl.parse_port_range(text) == expected


@pytest.mark.parametrize("text, message", [
    ("80-90-100", "wrong format to define port range, <starting port>-<ending port>"),
    ("70000", "starting port 70000 is not a valid port number, an integer between 0 and 65535"),
    ("10-x", "ending port x is not a valid port number"),
    ("90-80", "starting port cannot be larger than ending port in the ports range"),
], ids=["three-parts", "too-big", "not-a-number", "reversed"])
def test_bad_port_ranges_are_refused_with_meridios_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fl.parse_port_range(text)


@pytest.mark.parametrize("text, expected", [
    ("tcp[2:2] = 4002", fl.ByteMatch(fl.Protocol.TCP, 2, 2, 4002)),
    ("udp[0:4]=0x1", fl.ByteMatch(fl.Protocol.UDP, 0, 4, 1)),
    ("sctp[12 : 1] & 0xf0 = 0x10", fl.ByteMatch(fl.Protocol.SCTP, 12, 1, 0x10, 0xF0)),
], ids=["tcp-dport", "udp-hex", "sctp-masked"])
def test_byte_matches_parse_into_offset_length_mask_and_value(text: str, expected: fl.ByteMatch) -> None:
    assert fl.parse_byte_match(text) == expected


@pytest.mark.parametrize("text, message", [
    ("tcp[2:3] = 1", "byte match wrong format"), ("icmp[0:1] = 1", "byte match wrong format"),
    ("tcp[0:1] = 256", "must fit in 1 byte"), ("tcp[0:1] & 0x1ff = 0x1", "must fit"),
    ("tcp[0:1] & 0x0f = 0x10", "bits outside the mask"), ("tcp[70000:2] = 1", "beyond the 65535 bytes"),
], ids=["length-3", "icmp", "value-too-big", "mask-too-big", "unmatchable", "offset-too-far"])
def test_byte_matches_nftables_would_refuse_or_never_match_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fl.parse_byte_match(text)


def test_byte_match_renders_as_a_raw_transport_header_payload_match() -> None:
    assert fl.parse_byte_match("tcp[2:2] = 4002").nft() == "@th,16,16 0xfa2"
    assert fl.parse_byte_match("udp[8:1] & 0xf0 = 0x40").nft() == "@th,64,8 & 0xf0 == 0x40"


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=12))
def test_merged_port_ranges_cover_exactly_the_same_ports_without_overlap(pairs: list[tuple[int, int]]) -> None:
    ranges = [fl.PortRange(min(a, b), max(a, b)) for a, b in pairs]
    merged = fl.merge_ranges(ranges)
    assert all(a.last + 1 < b.first for a, b in zip(merged, merged[1:]))
    ports = {p for r in ranges for p in range(r.first, r.last + 1)}
    assert {p for m in merged for p in range(m.first, m.last + 1)} == ports


def _flow(**kw: object) -> model.Flow:
    base = dict(name="f", stream=STREAM, priority=1, protocols=("tcp",), source_subnets=(), source_port_ranges=(),
                destination_port_ranges=(), vips=(model.Vip("v", "203.0.113.10/32"),), byte_matches=())
    base.update(kw)
    return model.Flow(**base)  # type: ignore[arg-type]


def test_a_flow_parses_into_merged_typed_values() -> None:
    spec = fl.flow_spec(_flow(protocols=("udp", "tcp"), source_subnets=("192.0.2.0/25", "192.0.2.128/25", "::/0"),
                              destination_port_ranges=("80", "81-90", "4000"), source_port_ranges=("any",)))
    assert spec.protocols == (fl.Protocol.TCP, fl.Protocol.UDP)
    assert spec.sources == (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("::/0"))
    assert spec.destination_ports == (fl.PortRange(80, 90), fl.PortRange(4000, 4000))
    assert spec.source_ports == ()
    assert spec.sources_of(4) == (ipaddress.ip_network("192.0.2.0/24"),) and spec.sources_of(6) == ()


def test_a_flow_with_only_ipv6_sources_cannot_match_ipv4() -> None:
    assert fl.flow_spec(_flow(source_subnets=("2001:db8:e::/64",))).sources_of(4) is None


@pytest.mark.parametrize("kw, field, rule", [
    (dict(protocols=("tcp", "tcp")), "protocols", "duplicated protocols"),
    (dict(protocols=("icmp",)), "protocols[0]", "'icmp' is not one of tcp, udp, sctp"),
    (dict(protocols=()), "protocols", "at least one protocol"),
    (dict(source_subnets=("192.0.2.1/24",)), "source subnet[0]",
     "192.0.2.1/24 is not a valid prefix, probably 192.0.2.0/24 should be used"),
    (dict(destination_port_ranges=("80", "x")), "destination port[1]", "starting port x is not a valid port"),
    (dict(source_port_ranges=("9-1",)), "source port[0]", "starting port cannot be larger"),
    (dict(byte_matches=("tcp[1:5] = 1",)), "byte matches[0]", "byte match wrong format"),
    (dict(vips=(model.Vip("bad", "203.0.113.300/32"),)), "vip 'bad' address", "is not a valid prefix"),
    (dict(stream=None), "stream", "a flow must belong to a stream"),
], ids=["dup-proto", "bad-proto", "no-proto", "host-bits", "bad-dport", "reversed-sport", "bad-bytes", "bad-vip",
        "no-stream"])
def test_bad_flows_are_refused_naming_the_field_and_the_rule(kw: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(fl.InputError) as info:
        fl.flow_spec(_flow(**kw))
    assert info.value.field == field and rule in info.value.rule
    assert str(info.value).startswith("flow 'f': ")


@pytest.mark.parametrize("context, max_targets, rule", [
    ({}, 100, "None is not a numeric identifier"), ({"identifier": "abc"}, 100, "'abc' is not a numeric identifier"),
    ({"identifier": "0"}, 100, "0 is outside 1..100"), ({"identifier": "101"}, 100, "101 is outside 1..100"),
], ids=["missing", "not-numeric", "zero", "above-max"])
def test_targets_without_a_valid_identifier_are_refused(context: dict[str, str], max_targets: int,
                                                        rule: str) -> None:
    with pytest.raises(fl.InputError, match=rule):
        fl.target_spec(model.Target.make(["172.16.1.6/24"], context, stream=STREAM), max_targets)


def test_a_target_keeps_its_ips_without_prefix_length() -> None:
    spec = fl.target_spec(model.Target.make(["172.16.1.6/24", "fd00::6/64"], {"identifier": "7"}), 100)
    assert spec == fl.TargetSpec(7, (ipaddress.ip_address("172.16.1.6"), ipaddress.ip_address("fd00::6")))


def test_a_port_nat_with_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(fl.InputError, match="'icmp' is not one of tcp, udp, sctp"):
        fl.port_nat_spec("c", model.PortNat(80, 4000, "icmp", ()))
