"""ConfigMap writer (the operator's conversions), golden file, and the round trip through the NSP reader.

The golden file is validated by its real consumer: the NSP's reader (:func:`configmap.loads`).
Regenerate it with ``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_configmap_render.py``.
"""
from __future__ import annotations

import os
import pathlib
import textwrap
from typing import Any

import pytest
import yaml

from meridio.api import configmap, model, resources

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = pathlib.Path(__file__).parent / "golden" / "configmap-trench-a.yaml"
TRENCH = resources.Trench(resources.Metadata("trench-a"))


def make(kind: str, name: str, spec: dict[str, Any], trench: str = "trench-a") -> resources.Resource:
    return resources.parse_object({"apiVersion": "meridio.nordix.org/v1", "kind": kind,
                                   "metadata": {"name": name, "labels": {"trench": trench}}, "spec": spec})


def items(data: dict[str, str], key: str) -> list[dict[str, Any]]:
    return yaml.safe_load(data[key])["items"]  # type: ignore[no-any-return]


def render(*objs: resources.Resource) -> dict[str, str]:
    return configmap.render([TRENCH, *objs], "trench-a")


def test_an_empty_trench_renders_seven_keys_with_empty_item_lists() -> None:
    data = render()
    assert data == {"trench": "name: trench-a\n", **{k: "items: []\n" for k in configmap.KEYS[1:]}}


def test_any_ports_become_0_65535_and_other_ports_are_kept() -> None:
    f = make("Flow", "f", {"stream": "s", "vips": ["v"], "protocols": ["tcp"], "priority": 1,
                           "source-ports": ["any"], "destination-ports": ["80", "any", "90-95"]})
    (item,) = items(render(f), "flows")
    assert item["source-port-ranges"] == ["0-65535"]
    assert item["destination-port-ranges"] == ["80", "0-65535", "90-95"]


def test_flows_carry_every_field_in_meridios_order_and_omit_empty_byte_matches() -> None:
    f = make("Flow", "f", {"stream": "s", "vips": ["v"], "protocols": ["tcp"], "priority": 0})
    assert render(f)["flows"] == textwrap.dedent("""\
        items:
        - name: f
          source-subnets: []
          destination-port-ranges: []
          source-port-ranges: []
          protocols:
          - tcp
          vips:
          - v
          priority: 0
          stream: s
        """)


@pytest.mark.parametrize("hold_time,seconds", [("24s", 24), ("1m", 60), ("3.4s", 3), ("3.5s", 4), ("2500ms", 3)],
                         ids=["seconds", "minutes", "round-down", "half-rounds-up", "ms"])
def test_hold_time_is_rounded_to_whole_seconds(hold_time: str, seconds: int) -> None:
    g = make("Gateway", "g", {"address": "192.0.2.1", "bgp": {"local-asn": 1, "remote-asn": 2, "hold-time": hold_time}})
    assert items(render(g), "gateways")[0]["hold-time"] == seconds


def test_bgp_gateway_with_bfd_has_timers_in_milliseconds_and_ip_family_from_the_address() -> None:
    g = make("Gateway", "g", {"address": "2001:db8:100::150", "bgp": {
        "local-asn": 8103, "remote-asn": 4248829953, "hold-time": "24s", "local-port": 10179, "remote-port": 10179,
        "bfd": {"switch": True, "min-tx": "0.3s", "min-rx": "1500us", "multiplier": 5},
        "auth": {"key-name": "k", "key-source": "s"}}})
    assert render(g)["gateways"] == textwrap.dedent("""\
        items:
        - name: g
          address: 2001:db8:100::150
          remote-asn: 4248829953
          local-asn: 8103
          remote-port: 10179
          local-port: 10179
          ip-family: ipv6
          bfd: true
          protocol: bgp
          hold-time: 24
          min-tx: 300
          min-rx: 2
          multiplier: 5
          trench: trench-a
          bgp-auth:
            key: k
            source: s
        """)


@pytest.mark.parametrize("bfd", [None, {"switch": False, "min-tx": "1s", "min-rx": "1s", "multiplier": 3}],
                         ids=["no-bfd", "bfd-switched-off"])
def test_without_bfd_switched_on_the_gateway_says_bfd_false_and_has_no_timers(bfd: dict[str, Any] | None) -> None:
    bgp: dict[str, Any] = {"local-asn": 1, "remote-asn": 2, "hold-time": "24s"}
    if bfd is not None:
        bgp["bfd"] = bfd
    (item,) = items(render(make("Gateway", "g", {"address": "192.0.2.1", "bgp": bgp})), "gateways")
    assert item["bfd"] is False
    assert not {"min-tx", "min-rx", "multiplier"} & set(item)


def test_a_static_gateway_carries_only_its_bfd() -> None:
    g = make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static", "static": {
        "bfd": {"switch": True, "min-tx": "200ms", "min-rx": "200ms", "multiplier": 3}}})
    (item,) = items(render(g), "gateways")
    assert item == {"name": "g", "address": "192.0.2.1", "ip-family": "ipv4", "bfd": True, "protocol": "static",
                    "min-tx": 200, "min-rx": 200, "multiplier": 3, "trench": "trench-a"}


def test_incomplete_objects_are_left_out_as_the_operator_does() -> None:
    data = render(make("Stream", "s", {}), make("Flow", "f", {"vips": ["v"], "protocols": ["tcp"], "priority": 1}),
                  make("Vip", "v", {}))
    assert items(data, "streams") == items(data, "flows") == items(data, "vips") == []


def test_unset_max_targets_is_written_as_100() -> None:
    data = render(make("Stream", "s1", {"conduit": "c"}), make("Stream", "s2", {"conduit": "c", "max-targets": 7}))
    assert [i["max-targets"] for i in items(data, "streams")] == [100, 7]


def test_lists_are_sorted_by_name_and_other_trenches_left_out() -> None:
    data = render(make("Vip", "vb", {"address": "203.0.113.2/32"}), make("Vip", "va", {"address": "203.0.113.1/32"}),
                  make("Vip", "vx", {"address": "203.0.113.3/32"}, trench="trench-b"))
    assert [i["name"] for i in items(data, "vips")] == ["va", "vb"]


def test_conduit_port_nats_are_written_and_omitted_when_empty() -> None:
    data = render(make("Conduit", "c1", {"destination-port-nats": [
        {"port": 80, "target-port": 4000, "vips": ["v"], "protocol": "tcp"}]}), make("Conduit", "c2", {}))
    assert items(data, "conduits") == [
        {"name": "c1", "trench": "trench-a",
         "destination-port-nats": [{"port": 80, "target-port": 4000, "vips": ["v"], "protocol": "tcp"}]},
        {"name": "c2", "trench": "trench-a"}]


def test_rendering_an_unknown_trench_is_an_error() -> None:
    with pytest.raises(configmap.ConfigMapError, match='trench "trench-z" not found in namespace "default"'):
        configmap.render([TRENCH], "trench-z")


def e2e_trench_a() -> list[resources.Resource]:
    return resources.load_file(ROOT / "examples" / "e2e" / "init-trench-a.yaml")


def test_the_e2e_trench_a_manifest_matches_the_golden_file() -> None:
    text = configmap.render_manifest(e2e_trench_a(), "trench-a", "red")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_the_golden_manifest_is_accepted_by_the_nsp_reader() -> None:
    cfg = configmap.loads(GOLDEN.read_text(), str(GOLDEN))
    assert cfg.trench == model.Trench("trench-a")
    assert [a.name for a in cfg.attractors] == ["attractor-a-1", "attractor-a-2"]
    assert [g.name for g in cfg.attractors[0].gateways] == ["gateway-v4-a-1", "gateway-v6-a-1"]
    assert cfg.attractors[0].gateways[0].bfd_spec == model.BfdSpec(300, 300, 5)
    flow = next(f for f in cfg.flows if f.name == "flow-a-y-tcp")
    assert (flow.priority, flow.destination_port_ranges, flow.source_port_ranges) == (2, ("4001",), ("0-65535",))
    assert flow.stream is not None and flow.stream.max_targets == 100
    assert flow.stream.conduit is not None and flow.stream.conduit.name == "conduit-a-1"
    assert [v.address for v in flow.vips] == ["203.0.113.1/32", "2001:db8:a1::1/128"]


def test_one_table_drives_both_directions() -> None:
    data = configmap.render(e2e_trench_a(), "trench-a", "red")
    assert configmap.encode_data(configmap.decode_data(data)) == data
