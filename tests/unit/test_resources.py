"""Meridio resources as YAML: defaults, v1alpha1, strict schema errors with Kubernetes wording, round trips."""
from __future__ import annotations

import pathlib
import textwrap

import pytest

from meridio.api import problems, resources


def one(text: str) -> resources.Resource:
    (obj,) = resources.loads(textwrap.dedent(text))
    return obj


def errors(text: str, source: str = "<input>") -> list[str]:
    with pytest.raises(problems.ProblemsError) as err:
        resources.loads(textwrap.dedent(text), source)
    return [str(p) for p in err.value.problems]


def test_a_trench_without_spec_gets_ip_family_dualstack_and_namespace_default() -> None:
    t = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Trench
        metadata: {name: trench-a}
        """)
    assert isinstance(t, resources.Trench)
    assert (t.name, t.namespace, t.spec.ip_family) == ("trench-a", "default", "dualstack")


def test_v1alpha1_is_read_and_written_back_as_v1() -> None:
    t = one("""\
        apiVersion: meridio.nordix.org/v1alpha1
        kind: Trench
        metadata: {name: trench-a}
        spec: {ip-family: ipv4}
        """)
    assert resources.to_dict(t)["apiVersion"] == "meridio.nordix.org/v1"


def test_attractor_defaults_replicas_interface_type_and_nad_namespace() -> None:
    a = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Attractor
        metadata: {name: a, labels: {trench: t}}
        spec:
          composites: [c]
          interface:
            name: ext
            network-attachments: [{name: nad}]
        """)
    assert isinstance(a, resources.Attractor)
    assert a.spec.replicas == 1
    assert a.spec.interface.type == "nsm-vlan"
    assert a.spec.interface.network_attachments[0].namespace == "default"


def test_conduit_type_defaults_to_stateless_lb() -> None:
    c = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Conduit
        metadata: {name: c, labels: {trench: t}}
        """)
    assert isinstance(c, resources.Conduit) and c.spec.type == "stateless-lb"


def test_gateway_defaults_protocol_bgp_and_bgp_ports_179_only_when_bgp_is_given() -> None:
    with_bgp = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Gateway
        metadata: {name: g, labels: {trench: t}}
        spec: {address: 192.0.2.1, bgp: {local-asn: 1, remote-asn: 2}}
        """)
    without = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Gateway
        metadata: {name: g, labels: {trench: t}}
        spec: {address: 192.0.2.1, protocol: static}
        """)
    assert isinstance(with_bgp, resources.Gateway) and isinstance(without, resources.Gateway)
    assert with_bgp.spec.protocol == "bgp"
    assert with_bgp.spec.bgp is not None and (with_bgp.spec.bgp.remote_port, with_bgp.spec.bgp.local_port) == (179, 179)
    assert without.spec.bgp is None


def test_stream_max_targets_is_unset_unless_given() -> None:
    s = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Stream
        metadata: {name: s, labels: {trench: t}}
        spec: {conduit: c}
        """)
    assert isinstance(s, resources.Stream) and s.spec.max_targets is None


STORED = """\
---
apiVersion: meridio.nordix.org/v1
kind: Trench
metadata:
  name: trench-a
  namespace: red
spec:
  ip-family: dualstack
---
apiVersion: meridio.nordix.org/v1
kind: Gateway
metadata:
  name: gateway-a
  namespace: red
  labels:
    trench: trench-a
  annotations:
    note: x
spec:
  address: 169.254.100.150
  protocol: bgp
  bgp:
    remote-asn: 4248829953
    local-asn: 8103
    bfd:
      switch: true
      min-tx: 300ms
      min-rx: 300ms
      multiplier: 5
    hold-time: 24s
    remote-port: 10179
    local-port: 10179
    auth:
      key-name: key-a
      key-source: secret-a
---
apiVersion: meridio.nordix.org/v1
kind: Flow
metadata:
  name: flow-a
  namespace: red
  labels:
    trench: trench-a
spec:
  stream: stream-a
  vips:
  - vip-a
  source-subnets:
  - 0.0.0.0/0
  source-ports:
  - any
  destination-ports:
  - '4000'
  protocols:
  - tcp
  priority: 1
  byte-matches:
  - tcp[2:2] = 4002
---
apiVersion: meridio.nordix.org/v1
kind: Attractor
metadata:
  name: attractor-a
  namespace: red
  labels:
    trench: trench-a
spec:
  replicas: 2
  composites:
  - conduit-a
  gateways:
  - gateway-a
  vips:
  - vip-a
  interface:
    name: ext-vlan0
    type: network-attachment
    network-attachments:
    - name: nad-a
      namespace: red
      interface: ext
---
apiVersion: meridio.nordix.org/v1
kind: Conduit
metadata:
  name: conduit-a
  namespace: red
  labels:
    trench: trench-a
spec:
  type: stateless-lb
  destination-port-nats:
  - port: 80
    target-port: 4000
    vips:
    - vip-a
    protocol: tcp
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: nad-a
  namespace: red
spec:
  config: '{"cniVersion": "0.4.0", "type": "bridge"}'
"""


def test_the_stored_form_is_written_back_byte_for_byte() -> None:
    assert resources.dumps(resources.loads(STORED)) == STORED


def test_objects_survive_a_round_trip_through_yaml() -> None:
    objs = resources.loads(STORED)
    assert resources.loads(resources.dumps(objs)) == objs


def test_get_o_yaml_output_with_server_fields_can_be_applied_again() -> None:
    obj = one("""\
        apiVersion: meridio.nordix.org/v1
        kind: Vip
        metadata: {name: v, labels: {trench: t}, uid: 1234, resourceVersion: "7", creationTimestamp: x}
        spec: {address: 203.0.113.1/32}
        status: {}
        """)
    assert resources.to_dict(obj)["metadata"] == {"name": "v", "namespace": "default", "labels": {"trench": "t"}}


def test_a_list_document_is_expanded_and_empty_documents_are_skipped() -> None:
    objs = resources.loads("---\n---\nkind: List\napiVersion: v1\nitems:\n"
                           "- {apiVersion: meridio.nordix.org/v1, kind: Trench, metadata: {name: a}}\n"
                           "- {apiVersion: meridio.nordix.org/v1, kind: Trench, metadata: {name: b}}\n---\n")
    assert [o.name for o in objs] == ["a", "b"]


HEADER = "apiVersion: meridio.nordix.org/v1\nkind: {kind}\nmetadata: {{name: x, labels: {{trench: t}}}}\n"

SCHEMA_ERRORS = [
    ("Flow", "spec: {vips: [v], protocols: [tcp], priority: x}",
     'Flow/x: spec.priority: Invalid value: "x": spec.priority in body must be of type integer'),
    ("Flow", "spec: {vips: [v], protocols: [tcp], priority: 1, colour: red}",
     'Flow/x: spec.colour: unknown field "spec.colour"'),
    ("Flow", "spec: {vips: [v], priority: 1}", "Flow/x: spec.protocols: Required value"),
    ("Flow", "spec: {vips: [v], protocols: [icmp], priority: 1}",
     'Flow/x: spec.protocols[0]: Unsupported value: "icmp": supported values: "tcp", "udp", "sctp"'),
    ("Flow", "spec: {vips: v, protocols: [tcp], priority: 1}",
     'Flow/x: spec.vips: Invalid value: "v": spec.vips in body must be of type array'),
    ("Flow", "spec: {vips: [v], protocols: [tcp], priority: 3000000000}",
     "Flow/x: spec.priority: Invalid value: 3000000000: spec.priority in body should be less than or equal to "
     "2147483647"),
    ("Trench", "spec: {ip-family: ipv5}",
     'Trench/x: spec.ip-family: Unsupported value: "ipv5": supported values: "dualstack", "ipv4", "ipv6"'),
    ("Conduit", "spec: {type: stateful}", 'Conduit/x: spec.type: Unsupported value: "stateful"'),
    ("Conduit", "spec: {destination-port-nats: [{port: 80, vips: [v], protocol: tcp}]}",
     "Conduit/x: spec.destination-port-nats[0].target-port: Required value"),
    ("Conduit", "spec: {destination-port-nats: [{port: 70000, target-port: 1, vips: [v], protocol: tcp}]}",
     "spec.destination-port-nats[0].port in body should be less than or equal to 65535"),
    ("Stream", "spec: {max-targets: -1}", "spec.max-targets in body should be greater than or equal to 0"),
    ("Attractor", "spec: {composites: [c], interface: {name: 'eth0:1'}}",
     "Attractor/x: spec.interface.name: Invalid value: \"eth0:1\": spec.interface.name in body should match "
     "'^[^:\\//\\s]{1,13}$'"),
    ("Attractor", "spec: {composites: [c], interface: {name: averyveryverylongname}}",
     "spec.interface.name in body should match"),
    ("Attractor", "spec: {composites: [c]}", "Attractor/x: spec.interface: Required value"),
    ("Attractor", "spec: {composites: [c], interface: {name: ext, type: macvlan}}",
     'spec.interface.type: Unsupported value: "macvlan": supported values: "nsm-vlan", "network-attachment"'),
    ("Attractor", "spec: {composites: [c], interface: {name: ext, network-attachments: [{name: Bad_Nad}]}}",
     "spec.interface.network-attachments[0].name in body should match"),
    ("Attractor", "spec: {composites: [c], interface: {name: ext, network-attachments: [{name: n, interface: "
                  "'a b'}]}}", "spec.interface.network-attachments[0].interface in body should match"),
    ("Gateway", "spec: {address: 192.0.2.1, protocol: ospf}", 'spec.protocol: Unsupported value: "ospf"'),
    ("Gateway", "spec: {address: 192.0.2.1, bgp: {remote-port: 0}}",
     "spec.bgp.remote-port in body should be greater than or equal to 1"),
    ("Gateway", "spec: {address: 192.0.2.1, bgp: {auth: {key-name: 'a b', key-source: s}}}",
     "spec.bgp.auth.key-name in body should match '^[-._a-zA-Z0-9]+$'"),
    ("Gateway", "spec: {address: 192.0.2.1, bgp: {auth: {key-name: k, key-source: Secret}}}",
     "spec.bgp.auth.key-source in body should match"),
    ("Gateway", "spec: {address: 192.0.2.1, bgp: {bfd: {switch: 'yes please'}}}",
     "spec.bgp.bfd.switch in body must be of type boolean"),
    ("Gateway", "spec: {bgp: {}}", "Gateway/x: spec.address: Required value"),
    ("Vip", "spec: {address: 203.0.113.1/32}\nstatus: {phase: ok}", 'Vip/x: status.phase: unknown field "status.phase"'),
    ("Vip", "spec: {address: 203.0.113.1/32}\nextra: 1", 'Vip/x: extra: unknown field "extra"'),
]


@pytest.mark.parametrize("kind,body,message", SCHEMA_ERRORS, ids=[
    "wrong-type", "unknown-field", "required", "enum-item", "array-expected", "int32-range", "trench-enum",
    "conduit-enum", "nat-required", "uint16-range", "uint32-negative", "interface-name-pattern",
    "interface-name-too-long", "interface-required", "interface-type-enum", "nad-name-pattern",
    "nad-interface-pattern", "gateway-protocol-enum", "bgp-port-minimum", "auth-key-name-pattern",
    "auth-key-source-pattern", "boolean-expected", "address-required", "status-not-empty", "unknown-top-level"])
def test_schema_violations_name_object_field_and_rule(kind: str, body: str, message: str) -> None:
    found = errors(HEADER.format(kind=kind) + body + "\n")
    assert any(message in p for p in found), found


@pytest.mark.parametrize("metadata,message", [
    ("{name: Bad_Name}", 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'),
    ("{labels: {trench: t}}", "metadata.name: Required value: name or generateName is required"),
    ("{name: x, namespace: Red}", 'metadata.namespace: Invalid value: "Red": a lowercase RFC 1123 label'),
    ("{name: x, labels: {trench: 'a b'}}", 'metadata.labels: Invalid value: "a b": a valid label must be'),
    ("{name: x, labels: {trench: 1}}", "metadata.labels.trench in body must be of type string"),
    ("{name: x, labels: {'a b': c}}", 'metadata.labels: Invalid value: "a b": name part must consist'),
    ("{name: x, owner: me}", 'metadata.owner: unknown field "metadata.owner"'),
], ids=["name-not-rfc1123", "name-missing", "namespace-not-a-label", "label-value", "label-not-string",
        "label-key", "unknown-metadata-field"])
def test_metadata_is_checked_like_the_api_server(metadata: str, message: str) -> None:
    found = errors(f"apiVersion: meridio.nordix.org/v1\nkind: Vip\nmetadata: {metadata}\n")
    assert any(message in p for p in found), found


@pytest.mark.parametrize("text,message", [
    ("apiVersion: meridio.nordix.org/v1\nkind: Frobnicator\nmetadata: {name: x}\n",
     'f.yaml: document 1: no matches for kind "Frobnicator" in version "meridio.nordix.org/v1"'),
    ("apiVersion: meridio.nordix.org/v2\nkind: Trench\nmetadata: {name: x}\n",
     'no matches for kind "Trench" in version "meridio.nordix.org/v2"'),
    ("apiVersion: meridio.nordix.org/v1\nmetadata: {name: x}\n", "kind: Required value: Object 'Kind' is missing"),
    ("kind: Trench\nmetadata: {name: x}\n", "apiVersion: Required value"),
    ("- just a list\n", "f.yaml: document 1: Invalid value: [\"just a list\"]: must be of type object"),
], ids=["unknown-kind", "unknown-version", "missing-kind", "missing-api-version", "not-an-object"])
def test_documents_that_are_not_meridio_resources_are_rejected(text: str, message: str) -> None:
    assert any(message in p for p in errors(text, "f.yaml"))


def test_malformed_yaml_is_one_error_with_file_line_and_column() -> None:
    found = errors("apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: x\n", "f.yaml")
    assert len(found) == 1 and found[0].startswith("f.yaml:4:1: invalid YAML:")


def test_duplicate_keys_are_rejected_with_their_line() -> None:
    (found,) = errors("apiVersion: meridio.nordix.org/v1\nkind: Trench\nkind: Trench\nmetadata: {name: x}\n", "f.yaml")
    assert found.startswith("f.yaml:3:1: invalid YAML: found duplicate key 'kind'")


def test_problems_of_every_document_are_reported_together() -> None:
    text = (HEADER.format(kind="Flow") + "spec: {priority: x}\n---\n"
            + HEADER.format(kind="Vip").replace("name: x", "name: y") + "spec: {address: 1}\n")
    found = errors(text)
    assert any(p.startswith("Flow/x:") for p in found) and any(p.startswith("Vip/y:") for p in found)


def test_load_files_reads_several_files_in_order(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: a}\n")
    b.write_text("apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: b}\n")
    assert [o.name for o in resources.load_files([a, b])] == ["a", "b"]


def test_check_schema_finds_violations_in_objects_built_in_code() -> None:
    bad = resources.Trench(resources.Metadata("t"), resources.TrenchSpec(ip_family="ipv5"))
    assert [p.field for p in resources.check_schema(bad)] == ["spec.ip-family"]
    assert resources.check_schema(resources.Trench(resources.Metadata("t"))) == []
