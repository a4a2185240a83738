"""Meridio's watch filters (api/nsp/v1/filter.go): one table per kind, every wildcard rule."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meridio.api import model as m
from meridio.nsp import filters

TA, TB = m.Trench("trench-a"), m.Trench("trench-b")
CA = m.Conduit("conduit-a", TA)
CA_IN_B = m.Conduit("conduit-a", TB)
SA = m.Stream("stream-a", CA, 100)
SA_IN_B = m.Stream("stream-a", CA_IN_B, 100)


def case(id: str, flt: Any, obj: Any, expected: bool) -> Any:
    return pytest.param(flt, obj, expected, id=id)


TRENCH = [
    case("none filter matches an existing trench", None, TA, True),
    case("none filter does not match a missing trench", None, None, False),
    case("empty name is a wildcard", m.Trench(""), TA, True),
    case("equal name matches", m.Trench("trench-a"), TA, True),
    case("other name does not match", m.Trench("trench-b"), TA, False),
    case("a named filter does not match an unnamed trench", m.Trench("trench-a"), m.Trench(""), False),
]

CONDUIT = [
    case("none filter matches", None, CA, True),
    case("missing object never matches", m.Conduit(""), None, False),
    case("empty name and no trench match anything", m.Conduit(""), CA, True),
    case("equal name matches", m.Conduit("conduit-a"), CA, True),
    case("other name does not match", m.Conduit("conduit-b"), CA, False),
    case("no trench in the filter is a wildcard", m.Conduit("conduit-a"), CA_IN_B, True),
    case("trench in the filter must match", m.Conduit("conduit-a", TA), CA_IN_B, False),
    case("empty trench name in the filter is a wildcard", m.Conduit("conduit-a", m.Trench("")), CA_IN_B, True),
    case("a filter trench does not match an object without trench", m.Conduit("", TA), m.Conduit("conduit-a"), False),
]

STREAM = [
    case("none filter matches", None, SA, True),
    case("empty filter matches", m.Stream(""), SA, True),
    case("equal name matches", m.Stream("stream-a"), SA, True),
    case("other name does not match", m.Stream("stream-b"), SA, False),
    case("conduit parent compared by name", m.Stream("", m.Conduit("conduit-a")), SA, True),
    case("other conduit does not match", m.Stream("", m.Conduit("conduit-b")), SA, False),
    case("grandparent trench compared recursively", m.Stream("stream-a", m.Conduit("", TB)), SA, False),
    case("grandparent trench equal matches", m.Stream("stream-a", m.Conduit("", TB)), SA_IN_B, True),
    case("maxTargets of the filter is ignored", m.Stream("stream-a", None, 7), SA, True),
]

FA = m.Flow("flow-a", SA, 1)
FLOW = [
    case("none filter matches", None, FA, True),
    case("empty filter matches", m.Flow(""), FA, True),
    case("equal name matches", m.Flow("flow-a"), FA, True),
    case("other name does not match", m.Flow("flow-b"), FA, False),
    case("stream parent matches", m.Flow("", m.Stream("stream-a")), FA, True),
    case("other stream does not match", m.Flow("", m.Stream("stream-b")), FA, False),
    case("conduit of the stream compared recursively", m.Flow("", m.Stream("", m.Conduit("conduit-a"))), FA, True),
    case("other conduit of the stream does not match", m.Flow("", m.Stream("", m.Conduit("x"))), FA, False),
    case("trench three levels up compared", m.Flow("", m.Stream("", m.Conduit("", TB))), FA, False),
    case("a flow without stream does not match a stream filter", m.Flow("", m.Stream("")), m.Flow("f"), False),
]

VA = m.Vip("vip-a", "203.0.113.1/32", TA)
VIP = [
    case("none filter matches", None, VA, True),
    case("trench filter matches", m.Vip("", "", TA), VA, True),
    case("other trench does not match", m.Vip("", "", TB), VA, False),
    case("equal name matches", m.Vip("vip-a", ""), VA, True),
    case("other name does not match", m.Vip("vip-b", ""), VA, False),
    case("the address of the filter is ignored", m.Vip("vip-a", "198.51.100.1/32"), VA, True),
]

AA = m.Attractor("attractor-a", TA)
ATTRACTOR = [
    case("none filter matches", None, AA, True),
    case("name and trench match", m.Attractor("attractor-a", TA), AA, True),
    case("name matches, other trench does not", m.Attractor("attractor-a", TB), AA, False),
    case("other name does not match", m.Attractor("attractor-b", TA), AA, False),
    case("empty filter matches", m.Attractor(""), AA, True),
]

GA = m.Gateway("gateway-a", "192.0.2.1", trench=TA)
GATEWAY = [
    case("none filter matches", None, GA, True),
    case("trench filter matches", m.Gateway("", "", trench=TA), GA, True),
    case("other trench does not match", m.Gateway("", "", trench=TB), GA, False),
    case("other name does not match", m.Gateway("gateway-b", ""), GA, False),
    case("equal name matches", m.Gateway("gateway-a", ""), GA, True),
]

ENABLED_A = m.Target.make(ips=["172.16.1.6/24"], context={"identifier": "1"}, stream=SA)
DISABLED_A = m.Target.make(ips=["172.16.1.7/24"], status=m.TargetStatus.DISABLED, stream=SA)
FRONTEND = m.Target.make(ips=["fe-1"], type=m.TargetType.FRONTEND)
ANY = m.TargetStatus.ANY
TARGET = [
    case("none filter matches", None, ENABLED_A, True),
    case("default filter (ENABLED, DEFAULT, any stream) matches an enabled target", m.Target(), ENABLED_A, True),
    case("status must be equal", m.Target(), DISABLED_A, False),
    case("status ANY matches a disabled target", m.Target(status=ANY), DISABLED_A, True),
    case("status DISABLED matches a disabled target", m.Target(status=m.TargetStatus.DISABLED), DISABLED_A, True),
    case("type must be equal even with status ANY", m.Target(status=ANY), FRONTEND, False),
    case("FRONTEND filter matches a frontend", m.Target(status=ANY, type=m.TargetType.FRONTEND), FRONTEND, True),
    case("stream filter matches by name", m.Target(status=ANY, stream=m.Stream("stream-a")), ENABLED_A, True),
    case("stream filter of another stream does not match", m.Target(stream=m.Stream("stream-b")), ENABLED_A, False),
    case("stream filter with conduit compared recursively",
         m.Target(stream=m.Stream("", m.Conduit("conduit-a", TB))), ENABLED_A, False),
    case("a stream filter does not match a target without stream",
         m.Target(status=ANY, type=m.TargetType.FRONTEND, stream=m.Stream("")), FRONTEND, False),
    case("ips and context of the filter are ignored",
         m.Target.make(ips=["10.0.0.1"], context={"identifier": "9"}), ENABLED_A, True),
]

TABLES: list[tuple[str, Callable[[Any, Any], bool], list[Any]]] = [
    ("trench", filters.trench_matches, TRENCH),
    ("conduit", filters.conduit_matches, CONDUIT),
    ("stream", filters.stream_matches, STREAM),
    ("flow", filters.flow_matches, FLOW),
    ("vip", filters.vip_matches, VIP),
    ("attractor", filters.attractor_matches, ATTRACTOR),
    ("gateway", filters.gateway_matches, GATEWAY),
    ("target", filters.target_matches, TARGET),
]


@pytest.mark.parametrize("flt, obj, expected", TRENCH)
def test_trench_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.trench_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", CONDUIT)
def test_conduit_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.conduit_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", STREAM)
def test_stream_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.stream_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", FLOW)
def test_flow_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.flow_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", VIP)
def test_vip_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.vip_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", ATTRACTOR)
def test_attractor_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.attractor_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", GATEWAY)
def test_gateway_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.gateway_matches(flt, obj) is expected


@pytest.mark.parametrize("flt, obj, expected", TARGET)
def test_target_filter(flt: Any, obj: Any, expected: bool) -> None:
    assert filters.target_matches(flt, obj) is expected


def test_every_table_has_matching_and_non_matching_cases() -> None:
    for name, _, table in TABLES:
        outcomes = {p.values[2] for p in table}
        assert outcomes == {True, False}, name
