"""ConfigMap reader (the NSP's config source): strict decoding and Meridio's nsp.v1 conversion rules."""
from __future__ import annotations

import pathlib
import textwrap

import pytest

from meridio.api import configmap, model

TRENCH = model.Trench("trench-a")


def data(**values: str) -> dict[str, str]:
    return {k: textwrap.dedent(v) for k, v in values.items()}


FULL = data(
    trench="name: trench-a\n",
    conduits="""\
        items:
        - name: conduit-a-1
          trench: trench-a
          destination-port-nats:
          - {port: 80, target-port: 4000, vips: [vip-a-1, vip-unknown], protocol: tcp}
        """,
    streams="""\
        items:
        - {name: stream-a-i, conduit: conduit-a-1, max-targets: 10}
        """,
    flows="""\
        items:
        - name: flow-a-z-tcp
          source-subnets: [0.0.0.0/0]
          destination-port-ranges: ["4000"]
          source-port-ranges: ["0-65535"]
          protocols: [tcp]
          vips: [vip-a-1]
          priority: 1
          stream: stream-a-i
          byte-matches: ["tcp[2:2] = 4002"]
        """,
    vips="""\
        items:
        - {name: vip-a-1, address: 203.0.113.1/32, trench: trench-a}
        """,
    attractors="""\
        items:
        - {name: attractor-a-1, vips: [vip-a-1], gateways: [gw-a-1, gw-unknown], trench: trench-a}
        """,
    gateways="""\
        items:
        - name: gw-a-1
          address: 169.254.100.150
          remote-asn: 4248829953
          local-asn: 8103
          remote-port: 10179
          local-port: 10179
          ip-family: ipv4
          bfd: true
          protocol: bgp
          hold-time: 24
          min-tx: 300
          min-rx: 300
          multiplier: 5
          trench: trench-a
          bgp-auth: {key: k1, source: secret-a}
        """,
)

VIP = model.Vip("vip-a-1", "203.0.113.1/32", TRENCH)
CONDUIT = model.Conduit("conduit-a-1", TRENCH, (model.PortNat(80, 4000, "tcp", (VIP,)),))
STREAM = model.Stream("stream-a-i", CONDUIT, 10)
GATEWAY = model.Gateway(
    name="gw-a-1", address="169.254.100.150", ip_family="ipv4", protocol="bgp", remote_asn=4248829953,
    local_asn=8103, remote_port=10179, local_port=10179, hold_time=24, bfd=True,
    bfd_spec=model.BfdSpec(300, 300, 5), trench=TRENCH, bgp_auth=model.BgpAuth("k1", "secret-a"))


def test_a_full_configmap_converts_to_the_nested_nsp_model() -> None:
    cfg = configmap.parse(FULL)
    assert cfg == model.Configuration(
        trench=TRENCH,
        conduits=(CONDUIT,),
        streams=(STREAM,),
        flows=(model.Flow("flow-a-z-tcp", STREAM, 1, ("tcp",), ("0.0.0.0/0",), ("0-65535",), ("4000",), (VIP,),
                          ("tcp[2:2] = 4002",)),),
        vips=(VIP,),
        attractors=(model.Attractor("attractor-a-1", TRENCH, (VIP,), (GATEWAY,)),),
        gateways=(GATEWAY,),
    )


NONE = data(trench="name: trench-a\n", **{k: "items: []\n" for k in configmap.KEYS[1:]})


def test_a_configuration_without_objects_is_written_out_and_serves_the_trench_alone() -> None:
    assert configmap.parse(NONE) == model.Configuration(trench=TRENCH)


@pytest.mark.parametrize("key", configmap.KEYS)
def test_a_missing_key_rejects_the_whole_configuration_naming_the_key(key: str) -> None:
    partial = {k: v for k, v in FULL.items() if k != key}
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse(partial)
    assert str(err.value).startswith(f"{key}: Required value: every one of the seven keys")


@pytest.mark.parametrize("value", ["", "\n", "# nothing\n", "items:\n", "items: null\n", "{}\n"],
                         ids=["empty", "blank-line", "comment-only", "items-without-value", "items-null",
                              "empty-mapping"])
def test_a_key_holding_no_document_or_no_items_list_is_rejected_not_read_as_no_objects(value: str) -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse({**FULL, "gateways": value})
    assert str(err.value).startswith("gateways") and "Required value" in str(err.value)


def test_an_empty_data_mapping_names_all_seven_missing_keys() -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse({})
    assert [p.field.split(":")[0] for p in err.value.problems] == list(configmap.KEYS)


@pytest.mark.parametrize("trench", ["", "name: ''\n", "{}\n"], ids=["empty", "empty-name", "no-name"])
def test_a_trench_key_without_a_name_is_rejected(trench: str) -> None:
    with pytest.raises(configmap.ConfigMapError, match="trench"):
        configmap.parse({**FULL, "trench": trench})


@pytest.mark.parametrize("key,item,field", [
    ("conduits", "{name: c}", "trench"), ("streams", "{name: s}", "conduit"),
    ("flows", "{name: f, priority: 1}", "stream"), ("vips", "{name: v, trench: trench-a}", "address"),
    ("vips", "{name: v, address: 203.0.113.9/32}", "trench"), ("attractors", "{name: a}", "trench"),
    ("gateways", "{name: g, address: 192.0.2.1}", "trench"), ("gateways", "{address: 192.0.2.1, trench: trench-a}",
                                                            "name"),
], ids=["conduit-trench", "stream-conduit", "flow-stream", "vip-address", "vip-trench", "attractor-trench",
        "gateway-trench", "gateway-name"])
def test_an_item_without_its_identifying_field_is_rejected_not_dropped(key: str, item: str, field: str) -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse({**FULL, key: f"items: [{item}]\n"})
    assert f"{key}: items[0].{field}: Required value" in str(err.value)


def test_a_trench_key_naming_another_trench_than_the_readers_is_rejected() -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse(FULL, trench="trench-b")
    assert 'trench: name: Invalid value: "trench-a": this reader serves trench "trench-b"' in str(err.value)
    assert configmap.parse(FULL, trench="trench-a").trench == TRENCH


def test_objects_of_other_trenches_are_dropped() -> None:
    cfg = configmap.parse({**FULL, "trench": "name: trench-b\n"})
    assert cfg.trench == model.Trench("trench-b")
    assert (cfg.conduits, cfg.streams, cfg.flows, cfg.vips, cfg.attractors, cfg.gateways) == ((),) * 6


def test_streams_of_unknown_conduits_and_flows_of_unknown_streams_are_dropped() -> None:
    cfg = configmap.parse({**FULL, "conduits": "items: []\n"})
    assert cfg.streams == () and cfg.flows == ()
    cfg = configmap.parse({**FULL, "streams": "items: [{name: other, conduit: conduit-a-1}]\n"})
    assert [s.name for s in cfg.streams] == ["other"] and cfg.flows == ()


def test_unknown_vip_and_gateway_names_are_silently_left_out() -> None:
    cfg = configmap.parse(FULL)
    assert cfg.conduits[0].destination_port_nats[0].vips == (VIP,)
    assert cfg.attractors[0].gateways == (GATEWAY,)


def test_bfd_spec_is_present_only_when_bfd_is_true() -> None:
    gateways = "items: [{name: g, address: '2001:db8:100::150', bfd: false, min-tx: 300, trench: trench-a}]\n"
    (gw,) = configmap.parse({**FULL, "gateways": gateways}).gateways
    assert gw.bfd is False and gw.bfd_spec is None


def test_hand_written_gateways_get_protocol_bgp_and_the_family_of_their_address() -> None:
    gateways = "items: [{name: g, address: '2001:db8:100::150', trench: trench-a}]\n"
    (gw,) = configmap.parse({**FULL, "gateways": gateways}).gateways
    assert (gw.protocol, gw.ip_family) == ("bgp", "ipv6")


def test_a_stream_without_max_targets_gets_100_as_the_operator_writes() -> None:
    cfg = configmap.parse({**FULL, "streams": "items: [{name: s, conduit: conduit-a-1}]\n"})
    assert cfg.streams[0].max_targets == 100


BAD = [
    ({"gatewayz": ""}, 'gatewayz: unknown key "gatewayz"'),
    ({"trench": "name: t\nfoo: 1\n"}, 'trench: foo: unknown field "foo"'),
    ({"flows": "items: [{name: f, priority: x, stream: s}]\n"},
     'flows: items[0].priority: Invalid value: "x": items[0].priority in body must be of type integer'),
    ({"flows": "items: [{name: f, stream: s, destination-port-ranges: ['4000-3000']}]\n"},
     'flows: items[0].destination-port-ranges: Invalid value: "4000-3000": destination port[0]: '
     "starting port cannot be larger than ending port in the ports range"),
    ({"flows": "items: [{name: f, stream: s, protocols: [tcp, tcp]}]\n"}, "flows: items[0].protocols: Invalid value: "
     '["tcp", "tcp"]: duplicated protocols'),
    ({"flows": "items: [{name: f, stream: s, protocols: [icmp]}]\n"}, 'flows: items[0].protocols[0]: Unsupported value: "icmp"'),
    ({"flows": "items: [{name: f, stream: s, priority: -1}]\n"}, "flows: items[0].priority: Invalid value: -1: "
     "priority must be larger than 0"),
    ({"flows": "items: [{name: f, stream: s, byte-matches: ['tcp[2] = 1']}]\n"}, "byte matches[0]: byte match wrong format"),
    ({"vips": "items: [{name: v, address: 203.0.113.1/24, trench: t}]\n"},
     "vips: items[0].address: Invalid value: \"203.0.113.1/24\": 203.0.113.1/24 is not a valid prefix, "
     "probably 203.0.113.0/24 should be used"),
    ({"vips": "items: [{name: v, address: 203.0.113.1/32, trench: t}, {name: v, address: 203.0.113.2/32, trench: t}]\n"},
     'vips: items[1].name: Duplicate value: "v"'),
    ({"streams": "items: [{name: s, conduit: c, max-targets: 0}]\n"}, "streams: items[0].max-targets: Invalid value: 0: "
     "must be greater than or equal to 1 and less than or equal to 10000"),
    ({"gateways": "items: [{name: g, address: 169.254.100.150/24, trench: t}]\n"}, "invalid IP format"),
    ({"gateways": "items: [{name: g, address: 192.0.2.1, hold-time: 2, trench: t}]\n"}, "must > 3s"),
    ({"gateways": "items: [{name: g, address: 192.0.2.1, remote-port: 70000, trench: t}]\n"},
     "items[0].remote-port in body should be less than or equal to 65535"),
    ({"conduits": "items: [{name: c, trench: t, destination-port-nats: [{port: 80, target-port: 8080, vips: [v], "
                  "protocol: tcp}, {port: 80, target-port: 8080, vips: [w], protocol: tcp}]}]\n"},
     "conduits: items[0].destination-port-nats: destination port nats: [0] and [1] must be merged"),
    ({"vips": "items: [{name: v\n"}, "vips:2:1: invalid YAML"),
    ({"vips": "items: []\nitems: []\n"}, "found duplicate key 'items'"),
    ({"vips": "- a\n"}, 'vips: Invalid value: ["a"]: must be of type object'),
]


@pytest.mark.parametrize("bad,message", BAD, ids=[
    "unknown-key", "unknown-field", "wrong-type", "reversed-port-range", "duplicated-protocols",
    "unknown-protocol", "negative-priority", "byte-match", "vip-not-a-prefix", "duplicate-name",
    "max-targets-zero", "gateway-ip-with-mask", "hold-time-too-short", "port-out-of-range", "port-nat-merge",
    "yaml-syntax", "duplicate-yaml-key", "not-a-mapping"])
def test_bad_data_rejects_the_whole_update_naming_key_and_field(bad: dict[str, str], message: str) -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse({**FULL, **bad})
    assert message in str(err.value)


def test_every_problem_is_reported_not_only_the_first() -> None:
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.parse({**FULL, "flows": "items: [{name: f, stream: s, priority: -1, protocols: [tcp, tcp]}]\n",
                         "foo": ""})
    assert len(err.value.problems) == 3


def test_load_file_reads_a_whole_configmap_manifest(tmp_path: pathlib.Path) -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "meridio-configuration-trench-a"},
                "data": FULL}
    path = tmp_path / "cm.yaml"
    import yaml
    path.write_text(yaml.safe_dump(manifest))
    assert configmap.load_file(path) == configmap.parse(FULL)


def test_load_file_reads_just_the_data_mapping(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("trench: |\n  name: trench-a\nvips: |\n  items: [{name: v, address: 203.0.113.1/32, "
                    "trench: trench-a}]\n" + "".join(f"{k}: |\n  items: []\n" for k in configmap.KEYS[1:] if k != "vips"))
    assert configmap.load_file(path).vips == (model.Vip("v", "203.0.113.1/32", TRENCH),)


def test_load_file_accepts_structured_values_in_a_hand_written_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("trench: {name: trench-a}\nvips:\n  items: [{name: v, address: 203.0.113.1/32, trench: trench-a}]\n"
                    + "".join(f"{k}: {{items: []}}\n" for k in configmap.KEYS[1:] if k != "vips"))
    assert configmap.load_file(path).vips == (model.Vip("v", "203.0.113.1/32", TRENCH),)


@pytest.mark.parametrize("text", ["", "\n", "# emptied\n", "---\n"], ids=["0-bytes", "newline", "comment", "separator"])
def test_load_file_of_an_empty_file_is_an_error_not_an_empty_configuration(tmp_path: pathlib.Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.load_file(path)
    assert str(err.value).startswith(f"{path}: Required value: the file is empty")


@pytest.mark.parametrize("text,message", [
    ("kind: Secret\ndata: {}\n", 'kind: Unsupported value: "Secret"'),
    ("trench: [\n", ":2:1: invalid YAML"),
    ("a: 1\n---\nb: 2\n", "expected one YAML document"),
    ("- 1\n", "must be a ConfigMap or its data mapping"),
], ids=["other-kind", "yaml-syntax-with-line", "several-documents", "not-a-mapping"])
def test_load_file_rejects_what_is_not_a_configmap_with_the_file_name(
        tmp_path: pathlib.Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(configmap.ConfigMapError) as err:
        configmap.load_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_load_file_of_a_missing_file_is_a_config_map_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(configmap.ConfigMapError, match="cannot read"):
        configmap.load_file(tmp_path / "missing.yaml")


def test_a_file_cut_anywhere_is_rejected_except_between_whole_items_of_the_last_key() -> None:
    """Every prefix of a rendered ConfigMap file (a write caught half-way) is rejected, or it reads as the
    whole configuration, or it is cut exactly after a whole item of the file's last key (which no rule
    can see: write-then-rename is the documented way to change the file)."""
    from meridio.api import resources, yamlio
    objs = resources.load_files([pathlib.Path(__file__).parents[2] / "examples/e2e/init-trench-a.yaml"])
    text = yamlio.dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                        "data": configmap.render(objs, "trench-a", objs[0].namespace)})
    full = configmap.loads(text)
    last_key_at = text.rindex("\n  gateways: |\n")
    item_ends = {i + 1 for i in range(last_key_at, len(text)) if text.startswith("\n    - ", i)}
    accepted_and_different = []
    for cut in range(len(text)):
        try:
            cfg = configmap.loads(text[:cut])
        except configmap.ConfigMapError:
            continue
        if cfg != full:
            accepted_and_different.append(cut)
    assert len(full.gateways) == 4 and len(text) > 3000
    assert set(accepted_and_different) <= item_ends
