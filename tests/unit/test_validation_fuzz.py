"""Property tests: whatever the input, the parsers and the validator answer with problems, never a traceback,
and what they accept survives the round trips."""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meridio.api import checks, configmap, problems, resources, validation

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
PORTISH = st.one_of(st.text(alphabet="0123456789-any ", max_size=14), st.from_regex(r"[0-9]{1,7}(-[0-9]{1,7})?",
                                                                                    fullmatch=True))
FIELDS = {
    "Flow": {"stream": st.text(max_size=5), "vips": st.lists(st.sampled_from(["v1", "v2"]), max_size=2),
             "protocols": st.lists(st.sampled_from(["tcp", "udp", "sctp", "icmp"]), max_size=3),
             "priority": st.integers(-3, 3), "destination-ports": st.lists(PORTISH, max_size=3),
             "source-ports": st.lists(PORTISH, max_size=3),
             "source-subnets": st.lists(st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.0.0.1/8", "::/0", "x",
                                                         "2001:db8::/32", "1.2.3.4"]), max_size=3),
             "byte-matches": st.lists(st.sampled_from(["tcp[2:2] = 4002", "tcp[2:3] = 1", "udp[0:1] & 0xf = 0x1"]),
                                      max_size=2)},
    "Gateway": {"address": st.sampled_from(["192.0.2.1", "2001:db8::1", "1.2.3.4/24", "x"]),
                "protocol": st.sampled_from(["bgp", "static", "ospf"]),
                "bgp": st.fixed_dictionaries({}, optional={
                    "local-asn": st.integers(-1, 2**33), "remote-asn": st.integers(0, 9),
                    "hold-time": st.sampled_from(["", "24s", "2s", "1m", "x", "9" * 40 + "h"]),
                    "bfd": st.fixed_dictionaries({}, optional={
                        "switch": st.booleans(), "min-rx": st.sampled_from(["", "300ms", "-1s", "bad"]),
                        "multiplier": st.integers(0, 70000)})}),
                "static": st.fixed_dictionaries({}, optional={"bfd": st.fixed_dictionaries(
                    {}, optional={"switch": st.booleans()})})},
}


def doc(kind: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": "meridio.nordix.org/v1", "kind": kind,
            "metadata": {"name": "x", "labels": {"trench": "t"}}, "spec": spec}


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(resources.KINDS)), spec=VALUES)
def test_any_spec_is_either_an_object_or_a_list_of_problems(kind: str, spec: Any) -> None:
    try:
        obj = resources.parse_object(doc(kind, spec))
    except problems.ProblemsError as exc:
        assert exc.problems and all(isinstance(p, problems.Problem) for p in exc.problems)
        return
    assert resources.parse_object(resources.to_dict(obj)) == obj


def structured(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=FIELDS[kind])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(sorted(FIELDS)))
def test_the_validator_answers_every_parsed_object_and_renders_what_it_accepts(data: st.DataObject, kind: str) -> None:
    try:
        obj = resources.parse_object(doc(kind, data.draw(structured(kind))))
    except problems.ProblemsError:
        return
    trench = resources.Trench(resources.Metadata("t"))
    found = validation.validate_apply([trench], [obj])
    assert all(isinstance(p, problems.Problem) and p.kind == kind for p in found)
    if not found:
        configmap.parse(configmap.render([trench, obj], "t"))


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(list(configmap.KEYS) + ["other"]), st.one_of(st.text(max_size=40),
                                                                                       VALUES), max_size=4))
def test_any_configmap_data_is_either_a_configuration_or_a_config_map_error(data: dict[str, Any]) -> None:
    try:
        configmap.parse(data)
    except configmap.ConfigMapError as exc:
        assert exc.problems


@given(st.text(max_size=20))
def test_port_parsing_only_ever_raises_its_own_error(text: str) -> None:
    try:
        r = checks.parse_port_range(text)
    except checks.CheckError:
        return
    assert 0 <= r.start <= r.end <= 65535


@given(st.text(max_size=30))
def test_prefix_and_duration_checks_never_raise(text: str) -> None:
    checks.check_prefix(text)
    checks.check_prefix_or_range(text)
    checks.check_duration_at_least(text, 3000)
    checks.round_duration(text, 1_000_000)


def test_absurdly_long_numbers_are_rejected_with_meridios_messages() -> None:
    assert checks.check_ports(["9" * 5000]) == (0, f"[0]: starting port {'9' * 5000} is not a valid port number, "
                                                   "an integer between 0 and 65535")
    assert checks.check_ports(["0000080"]) is None  # leading zeros are fine, as with Go's ParseUint
    assert checks.check_duration_at_least("9" * 400 + "s", 3000) == (
        "invalid time duration format, must be a decimal number with time unit ms/s/m/h")
