"""Rendering the desired data path into nftables objects (pure), with golden files.

The golden files are also loaded by the real ``nft`` in tests/netns/test_lb_golden.py. Regenerate them
with ``MERIDIO_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_lb_ruleset.py``.
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import os

import pytest

from meridio.api import model
from meridio.loadbalancer import flows as fl
from meridio.loadbalancer import maglev, plan, ruleset
from meridio.loadbalancer.nftobjects import safe_name
from tests.unit import lb_samples as samples


def check_golden(name: str, text: str) -> None:
    path = samples.GOLDEN / name
    if os.environ.get("MERIDIO_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def full_plan() -> str:
    return "\n".join(plan.plan(plan.Installed(), ruleset.render(samples.config()))) + "\n"


def change_plan() -> str:
    before = plan.Installed.of(ruleset.render(samples.config()))
    after = ruleset.render(samples.config(targets_a=(1, 2, 3), flow_set=samples.flows()[:2]))
    return "\n".join(plan.plan(before, after)) + "\n"


def test_the_full_ruleset_matches_the_golden_file() -> None:
    check_golden("lb_full.nft", full_plan())


def test_the_update_for_a_target_and_a_flow_change_matches_the_golden_file() -> None:
    check_golden("lb_change.nft", change_plan())


def _rules(rs: ruleset.Ruleset, chain: str) -> tuple[str, ...]:
    return rs.chains[chain].rules


def test_flows_of_a_vip_are_ordered_by_priority_higher_number_first_within_each_packet_kind() -> None:
    rules = _rules(ruleset.render(samples.config()), "vip-203.0.113.10/32")
    counters = [r.split('counter name "')[1].split('"')[0] for r in rules if "counter name" in r]
    assert counters == ["flow-stream-b-special", "flow-stream-a-web"] * 3
    kinds = [r.split()[0] + " " + r.split()[1] for r in rules[:-1]]
    assert kinds == ["meta l4proto"] * 2 + ["icmp type"] * 4  # L4 first: one rule per flow for TCP/UDP/SCTP
    assert rules[-1] == "drop"


def test_a_vip_chain_does_not_grow_with_the_flows_of_other_vips() -> None:
    others = tuple(fl.flow_spec(model.Flow(f"f{i}", samples.stream("stream-a"), i, ("tcp",), (), (), (str(i),),
                                           (model.Vip(f"v{i}", f"198.51.100.{i % 250}/32"),)))
                   for i in range(1, 1001))
    base = ruleset.render(samples.config())
    busy = ruleset.render(dataclasses.replace(samples.config(), flows=samples.flows() + others))
    assert _rules(busy, "vip-203.0.113.10/32") == _rules(base, "vip-203.0.113.10/32")
    assert len(busy.maps["dispatch4"].elements) > 100


def test_overlapping_vips_are_split_so_each_piece_gets_exactly_the_flows_covering_it() -> None:
    pieces = ruleset.pieces([ipaddress.ip_network("198.51.100.0/24")], [ipaddress.ip_network("198.51.100.7/32")])
    assert pieces == [(4, 0xC6336400, 0xC6336406), (4, 0xC6336407, 0xC6336407), (4, 0xC6336408, 0xC63364FF)]
    rs = ruleset.render(samples.config())
    assert rs.maps["dispatch4"].elements == {
        "198.51.100.0-198.51.100.6": "goto vip-198.51.100.0-198.51.100.6",
        "198.51.100.7/32": "goto vip-198.51.100.7/32",
        "198.51.100.8-198.51.100.255": "goto vip-198.51.100.8-198.51.100.255",
        "203.0.113.10/32": "goto vip-203.0.113.10/32"}
    assert any("flow-stream-b-special" in r for r in _rules(rs, "vip-198.51.100.7/32"))
    assert not any("flow-stream-b-special" in r for r in _rules(rs, "vip-198.51.100.8-198.51.100.255"))


def test_a_stream_map_holds_identifier_plus_offset_spread_by_maglev() -> None:
    rs = ruleset.render(samples.config(targets_a=(1, 2)))
    marks = rs.buckets["s-stream-a"].marks
    assert len(marks) == maglev.table_size(3) == 293
    assert collections.Counter(marks) == {5001: 147, 5002: 146}
    assert rs.maps["target-counters"].elements == {"5001": '"tgt-5001"', "5002": '"tgt-5002"', "5006": '"tgt-5006"'}


def test_a_stream_without_targets_has_an_empty_map_so_its_flows_drop() -> None:
    rs = ruleset.render(samples.config(targets_a=()))
    assert rs.buckets["s-stream-a"].marks == ()
    assert _rules(rs, "s-stream-a-h4")[-1] == "drop"


def test_a_byte_match_restricts_the_flow_to_its_protocol() -> None:
    spec = fl.flow_spec(model.Flow("f", samples.stream("stream-a"), 1, ("tcp", "udp"), (), (), (),
                                   (samples.VIPS[0],), ("udp[0:2] = 53",)))
    rules = _rules(ruleset.render(dataclasses.replace(samples.config(), flows=(spec,))), "vip-203.0.113.10/32")
    assert rules[0].startswith("meta l4proto udp @th,0,16 0x35 ")


def test_icmp_errors_match_the_reversed_inner_header_and_hash_like_the_flow() -> None:
    rs = ruleset.render(samples.config())
    icmp = [r for r in _rules(rs, "vip-203.0.113.10/32") if "flow-stream-a-web" in r and r.startswith("icmp type {")]
    assert icmp == ["icmp type { destination-unreachable, time-exceeded, parameter-problem } @th,64,8 0x45 "
                    "@th,136,8 { 6, 17 } @th,192,32 0xc0000200-0xc00002ff @th,224,16 { 80, 4000-4010 } "
                    'counter name "flow-stream-a-web" goto s-stream-a-i4']
    assert _rules(rs, "s-stream-a-i4")[0].startswith(
        "meta mark set jhash @th,192,32 . @th,160,32 . @th,240,16 . @th,224,16 mod 293 seed ")


def test_port_nat_rewrites_both_ways_and_compensates_the_icmp_checksum() -> None:
    rules = _rules(ruleset.render(samples.config()), "port-nat")
    assert "ip daddr @nat-80-4000-tcp-4 tcp dport 80 tcp dport set 4000" in rules
    assert "ip6 saddr @nat-80-4000-tcp-6 tcp sport 4000 tcp sport set 80" in rules
    assert any("@th,32,16 set 0xf0af @th,224,16 set 4000" in r for r in rules)  # 0 - (4000 - 80), one's complement


def test_without_a_target_interface_prefix_there_is_no_defrag_exemption() -> None:
    rs = ruleset.render(dataclasses.replace(samples.config(), target_interface_prefix=""))
    assert "defrag-skip" not in rs.chains and "defrag-enable" in rs.chains


@pytest.mark.parametrize("parts, expected", [
    (("stream-a",), "s-stream-a"), (("a b",), "s-x"), (("x" * 300,), "s-x"), (("-ok.1",), "s--ok.1"),
], ids=["plain", "space", "too-long", "dashes-dots"])
def test_object_names_are_plain_nft_names_or_hashed(parts: tuple[str, ...], expected: str) -> None:
    assert safe_name("s", *parts).startswith(expected)
