"""The one validator: every Meridio webhook rule on create, with a passing and a failing case each."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from meridio.api import resources, validation

TRENCH = resources.Trench(resources.Metadata("trench-a"))


def make(kind: str, name: str, spec: dict[str, Any] | None = None, trench: str | None = "trench-a",
         namespace: str = "default") -> resources.Resource:
    labels = {"trench": trench} if trench is not None else {}
    doc = {"apiVersion": "meridio.nordix.org/v1", "kind": kind,
           "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec or {}}
    return resources.parse_object(doc)


def flow(name: str = "f", **spec: Any) -> resources.Resource:
    return make("Flow", name, {"vips": ["v"], "protocols": ["tcp"], "priority": 1, **spec})


def gateway(name: str = "g", **spec: Any) -> resources.Resource:
    base: dict[str, Any] = {"address": "192.0.2.1", "bgp": {"local-asn": 8103, "remote-asn": 4248829953,
                                                             "hold-time": "24s"}}
    return make("Gateway", name, {**base, **spec})


def bgp(**fields: Any) -> dict[str, Any]:
    return {"local-asn": 8103, "remote-asn": 4248829953, "hold-time": "24s", **fields}


def attractor(name: str = "a", interface: dict[str, Any] | None = None, **spec: Any) -> resources.Resource:
    iface = interface or {"name": "ext", "type": "network-attachment", "network-attachments": [{"name": "nad"}]}
    return make("Attractor", name, {"composites": ["c"], "interface": iface, **spec})


def vlan(**fields: Any) -> dict[str, Any]:
    return {"name": "ext", "ipv4-prefix": "169.254.100.0/24", "ipv6-prefix": "2001:db8:100::/64",
            "nsm-vlan": {"base-interface": "eth0", "vlan-id": 100}, **fields}


def messages(incoming: list[resources.Resource], existing: list[resources.Resource] | None = None) -> list[str]:
    return [str(p) for p in validation.validate_apply([TRENCH] + (existing or []), incoming)]


# (id, object, expected problem or None for valid)
CASES: list[tuple[str, resources.Resource, str | None]] = [
    # Trench
    ("trench-valid", resources.Trench(resources.Metadata("t2"), resources.TrenchSpec("ipv6")), None),
    # Conduit
    ("conduit-valid", make("Conduit", "c"), None),
    ("port-nats-valid", make("Conduit", "c", {"destination-port-nats": [
        {"port": 80, "target-port": 4000, "vips": ["v1"], "protocol": "tcp"},
        {"port": 80, "target-port": 4000, "vips": ["v2"], "protocol": "udp"}]}), None),
    ("port-nats-must-be-merged", make("Conduit", "c", {"destination-port-nats": [
        {"port": 80, "target-port": 4000, "vips": ["v1"], "protocol": "tcp"},
        {"port": 80, "target-port": 4000, "vips": ["v2"], "protocol": "tcp"}]}),
     "Conduit/c: spec.destination-port-nats: Invalid value: "),
    ("port-nats-colliding", make("Conduit", "c", {"destination-port-nats": [
        {"port": 80, "target-port": 4000, "vips": ["v1"], "protocol": "tcp"},
        {"port": 4000, "target-port": 8080, "vips": ["v1"], "protocol": "tcp"}]}),
     "destination port nats: [0] and [1] are colliding"),
    ("port-nats-same-port-two-targets", make("Conduit", "c", {"destination-port-nats": [
        {"port": 80, "target-port": 4000, "vips": ["v1"], "protocol": "tcp"},
        {"port": 80, "target-port": 5000, "vips": ["v1"], "protocol": "tcp"}]}),
     "destination port nats: [0] and [1] are colliding"),
    # Stream
    ("max-targets-unset", make("Stream", "s", {"conduit": "c"}), None),
    ("max-targets-1", make("Stream", "s", {"max-targets": 1}), None),
    ("max-targets-10000", make("Stream", "s", {"max-targets": 10000}), None),
    ("max-targets-0", make("Stream", "s", {"max-targets": 0}),
     "Stream/s: spec.max-targets: Invalid value: 0: must be greater than or equal to 1 and less than or equal to 10000"),
    ("max-targets-10001", make("Stream", "s", {"max-targets": 10001}), "less than or equal to 10000"),
    # Flow: ports
    ("ports-valid", flow(**{"destination-ports": ["80", "90-95", "100"], "source-ports": ["any"]}), None),
    ("port-range-reversed", flow(**{"destination-ports": ["4000-3000"]}),
     'Flow/f: spec.destination-ports: Invalid value: "4000-3000": destination port[0]: starting port cannot be '
     "larger than ending port in the ports range"),
    ("port-range-three-parts", flow(**{"source-ports": ["1-2-3"]}),
     'spec.source-ports: Invalid value: "1-2-3": source port[0]: wrong format to define port range, '
     "<starting port>-<ending port>"),
    ("port-not-a-number", flow(**{"destination-ports": ["80", "http"]}),
     "destination port[1]: starting port http is not a valid port number, an integer between 0 and 65535"),
    ("port-too-large", flow(**{"destination-ports": ["65536"]}),
     "destination port[0]: starting port 65536 is not a valid port number"),
    ("port-range-end-not-a-number", flow(**{"destination-ports": ["80-x"]}),
     "destination port[0]: ending port x is not a valid port number, an integer between 0 and 65535"),
    ("ports-overlapping", flow(**{"destination-ports": ["70-90", "80"]}),
     'spec.destination-ports: Invalid value: "80": destination port[1]: overlapping ports'),
    ("source-ports-any-overlaps-everything", flow(**{"source-ports": ["any", "80"]}),
     "source port[1]: overlapping ports"),
    # Flow: subnets
    ("subnets-valid", flow(**{"source-subnets": ["0.0.0.0/0", "2001:db8::/32", "2001:db9::/32"]}), None),
    ("subnet-not-a-network-address", flow(**{"source-subnets": ["10.0.0.1/8"]}),
     'spec.source-subnets: Invalid value: "10.0.0.1/8": source subnet[0]: 10.0.0.1/8 is not a valid prefix, '
     "probably 10.0.0.0/8 should be used"),
    ("subnet-v6-not-a-network-address", flow(**{"source-subnets": ["2001:db8::1/64"]}),
     "probably 2001:db8::/64 should be used"),
    ("subnet-invalid", flow(**{"source-subnets": ["10.0.0.0"]}), "source subnet[0]: invalid CIDR address: 10.0.0.0"),
    ("subnets-overlapping", flow(**{"source-subnets": ["10.0.0.0/8", "10.1.0.0/16"]}),
     'spec.source-subnets: Invalid value: "10.1.0.0/16": source subnet[1] and [0]: overlapping subnet'),
    # Flow: protocols, priority, byte matches
    ("protocols-valid", flow(protocols=["tcp", "udp", "sctp"]), None),
    ("protocols-duplicated", flow(protocols=["tcp", "udp", "tcp"]),
     'Flow/f: spec.protocols: Invalid value: ["tcp", "udp", "tcp"]: duplicated protocols'),
    ("priority-0-accepted", flow(priority=0), None),
    ("priority-negative", flow(priority=-1), "Flow/f: spec.priority: Invalid value: -1: priority must be larger than 0"),
    ("byte-matches-valid", flow(**{"byte-matches": ["tcp[2:2] = 4002", "udp[8 : 1] & 0xf0 = 0x40", "sctp[0:4]=1"]}),
     None),
    ("byte-match-bad-length", flow(**{"byte-matches": ["tcp[2:2] = 1", "tcp[2:3] = 1"]}),
     'spec.byte-matches: Invalid value: "tcp[2:3] = 1": byte matches[1]: byte match wrong format'),
    ("byte-match-bad-protocol", flow(**{"byte-matches": ["icmp[0:1] = 8"]}), "byte matches[0]: byte match wrong format"),
    ("byte-match-uppercase-hex", flow(**{"byte-matches": ["tcp[2:2] = 0xFA"]}), "byte match wrong format"),
    # Vip
    ("vip-v4", make("Vip", "v", {"address": "203.0.113.1/32"}), None),
    ("vip-v6", make("Vip", "v", {"address": "2001:db8:a1::1/128"}), None),
    ("vip-range-accepted", make("Vip", "v", {"address": "203.0.113.0/24"}), None),
    ("vip-not-a-network-address", make("Vip", "v", {"address": "203.0.113.1/24"}),
     'Vip/v: spec.address: Invalid value: "203.0.113.1/24": 203.0.113.1/24 is not a valid prefix, probably '
     "203.0.113.0/24 should be used"),
    ("vip-without-mask", make("Vip", "v", {"address": "203.0.113.1"}), "invalid CIDR address: 203.0.113.1"),
    ("vip-empty", make("Vip", "v"), 'Vip/v: spec.address: Invalid value: "": invalid CIDR address: '),
    # Attractor: interface
    ("nad-valid", attractor(), None),
    ("nad-with-prefix", attractor(interface={"name": "ext", "type": "network-attachment",
                                             "ipv6-prefix": "2001:db8::/64", "network-attachments": [{"name": "n"}]}),
     "Attractor/a: spec.interface.ipv6-prefix: Forbidden: not supported for type"),
    ("nad-none", attractor(interface={"name": "ext", "type": "network-attachment"}),
     "Attractor/a: spec.interface.network-attachments: Invalid value: []: single Network Attachment item required"),
    ("nad-two", attractor(interface={"name": "ext", "type": "network-attachment",
                                     "network-attachments": [{"name": "n1"}, {"name": "n2"}]}),
     "single Network Attachment item required"),
    ("nsm-vlan-valid", attractor(interface=vlan()), None),
    ("nsm-vlan-ranges-valid", attractor(interface=vlan(**{
        "ipv4-prefix": "192.168.100.3-192.168.100.100/24;192.168.100.200-192.168.100.250/24",
        "ipv6-prefix": "100:100::bbbb-100:100::cccc/64"})), None),
    ("nsm-vlan-missing-vlan-id", attractor(interface=vlan(**{"nsm-vlan": {"base-interface": "eth0"}})),
     'spec.interface.nsm-vlan: Invalid value: {"base-interface": "eth0"}: missing mandatory parameter '
     "base-interface/vlan-id"),
    ("nsm-vlan-missing-base-interface", attractor(interface=vlan(**{"nsm-vlan": {"vlan-id": 100}})),
     "missing mandatory parameter base-interface/vlan-id"),
    ("nsm-vlan-missing-prefix", attractor(interface={**vlan(), "ipv4-prefix": ""}),
     'spec.interface.ipv4-prefix: Invalid value: "": invalid CIDR address: '),
    ("nsm-vlan-prefix-not-network", attractor(interface=vlan(**{"ipv4-prefix": "169.254.100.1/24"})),
     "169.254.100.1/24 is not a valid prefix, probably 169.254.100.0/24 should be used"),
    ("nsm-vlan-range-outside", attractor(interface=vlan(**{"ipv4-prefix": "10.0.0.1-10.0.0.9/24;10.1.0.1-10.1.0.9/24"})),
     "network mismatch: '10.0.0.0/24' != '10.1.0.0/24'"),
    ("nsm-vlan-range-start-outside", attractor(interface=vlan(**{"ipv4-prefix": "10.0.1.1-10.0.0.9/24"})),
     "'10.0.0.0/24' is not a valid IP range start for CIDR 10.0.1.1"),
    ("composites-two", attractor(composites=["c1", "c2"]),
     'Attractor/a: spec.composites: Invalid value: ["c1", "c2"]: only one composite per attractor is supported in '
     "the current version"),
    # Gateway
    ("gateway-bgp-valid", gateway(), None),
    ("gateway-v6-valid", gateway(address="2001:db8:100::150"), None),
    ("gateway-address-with-mask", gateway(address="192.0.2.1/24"),
     'Gateway/g: spec.address: Invalid value: "192.0.2.1/24": invalid IP format'),
    ("gateway-missing-asns", gateway(bgp={"hold-time": "24s"}),
     "Gateway/g: spec.bgp.remote-asn: Invalid value: null: mandatory parameter is missing"),
    ("gateway-missing-local-asn", gateway(bgp={"remote-asn": 1, "hold-time": "24s"}),
     "spec.bgp.local-asn: Invalid value: null: mandatory parameter is missing"),
    ("gateway-bgp-absent-means-no-ports", make("Gateway", "g", {"address": "192.0.2.1"}),
     "spec.bgp.local-port: Invalid value: null: mandatory parameter is missing"),
    ("hold-time-missing", gateway(bgp={"local-asn": 1, "remote-asn": 2}),
     'spec.bgp.hold-time: Invalid value: "": invalid time duration format, must be a decimal number with time unit '
     "ms/s/m/h"),
    ("hold-time-not-a-duration", gateway(bgp=bgp(**{"hold-time": "24"})), "invalid time duration format"),
    ("hold-time-3s", gateway(bgp=bgp(**{"hold-time": "3s"})), None),
    ("hold-time-1m", gateway(bgp=bgp(**{"hold-time": "1m"})), None),
    ("hold-time-2999ms", gateway(bgp=bgp(**{"hold-time": "2999ms"})),
     'spec.bgp.hold-time: Invalid value: "2999ms": invalid time duration value, must > 3s'),
    ("bfd-on-valid", gateway(bgp=bgp(bfd={"switch": True, "min-tx": "300ms", "min-rx": "300ms", "multiplier": 5})),
     None),
    ("bfd-off-without-timers", gateway(bgp=bgp(bfd={"switch": False})), None),
    ("bfd-without-switch", gateway(bgp=bgp(bfd={"min-tx": "300ms"})),
     "Gateway/g: spec.bgp.bfd.switch: Invalid value: null: switch must be specified"),
    ("bfd-on-missing-min-rx", gateway(bgp=bgp(bfd={"switch": True, "min-tx": "300ms", "multiplier": 3})),
     'spec.bgp.bfd.min-rx: Invalid value: "": min-rx must be specified'),
    ("bfd-on-missing-min-tx", gateway(bgp=bgp(bfd={"switch": True, "min-rx": "300ms", "multiplier": 3})),
     "min-tx must be specified"),
    ("bfd-on-missing-multiplier", gateway(bgp=bgp(bfd={"switch": True, "min-rx": "300ms", "min-tx": "1s"})),
     "spec.bgp.bfd.multiplier: Invalid value: null: multiplier must be specified"),
    ("bfd-bad-duration", gateway(bgp=bgp(bfd={"switch": True, "min-rx": "fast", "min-tx": "1s", "multiplier": 3})),
     'spec.bgp.bfd.min-rx: Invalid value: "fast": invalid time duration format'),
    ("bfd-negative-duration", gateway(bgp=bgp(bfd={"switch": True, "min-rx": "-1ms", "min-tx": "1s",
                                                   "multiplier": 3})),
     'spec.bgp.bfd.min-rx: Invalid value: "-1ms": invalid time duration value, must > 0s'),
    ("bgp-with-static", gateway(static={"bfd": {"switch": True}}),
     'Gateway/g: spec.static: Invalid value: {"bfd": {"switch": true}}: must be empty when protocol is bgp'),
    ("static-valid", make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static", "static": {
        "bfd": {"switch": True, "min-tx": "200ms", "min-rx": "200ms", "multiplier": 3}}}), None),
    ("static-without-bfd", make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static"}), None),
    ("static-with-bgp", make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static", "bgp": {"local-asn": 1}}),
     "Gateway/g: spec.bgp: Invalid value: "),
    ("static-with-empty-bgp-gets-port-defaults", make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static",
                                                                       "bgp": {}}),
     "must be empty when protocol is static"),
    ("static-bfd-without-switch", make("Gateway", "g", {"address": "192.0.2.1", "protocol": "static",
                                                        "static": {"bfd": {"multiplier": 3}}}),
     "spec.static.bfd.switch: Invalid value: null: switch must be specified"),
]


@pytest.mark.parametrize("obj,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_webhook_rule_accepts_good_and_rejects_bad_objects(obj: resources.Resource, expected: str | None) -> None:
    found = messages([obj])
    if expected is None:
        assert found == []
    else:
        assert any(expected in m for m in found), found


def test_objects_built_in_code_that_only_the_webhook_would_see_are_checked() -> None:
    trench = resources.Trench(resources.Metadata("t2"), resources.TrenchSpec(ip_family=""))
    conduit = dataclasses.replace(make("Conduit", "c"), spec=resources.ConduitSpec(type=""))
    a = attractor()
    assert isinstance(a, resources.Attractor)
    bad_iface = dataclasses.replace(a, spec=dataclasses.replace(
        a.spec, interface=dataclasses.replace(a.spec.interface, type="macvlan")))
    found = messages([trench, conduit, bad_iface])
    assert 'Trench/t2: spec.ip-family: Invalid value: "": cannot be empty' in found
    assert 'Conduit/c: spec.type: Invalid value: "": cannot be empty' in found
    assert 'Attractor/a: spec.interface.type: Invalid value: "macvlan": not a supported interface' in found


# --- trench label -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Conduit", "Stream", "Flow", "Vip", "Attractor", "Gateway"])
def test_every_kind_but_trench_must_have_a_trench_label(kind: str) -> None:
    obj = {"Flow": flow(), "Attractor": attractor(), "Gateway": gateway()}.get(kind) or make(kind, "x")
    unlabelled = dataclasses.replace(obj, metadata=resources.Metadata(obj.name))
    assert f"{kind} must have a trench label" in " ".join(messages([unlabelled]))


@pytest.mark.parametrize("kind", ["Conduit", "Stream", "Vip"])
def test_creating_an_object_of_a_missing_trench_fails(kind: str) -> None:
    obj = make(kind, "x", {"address": "203.0.113.1/32"} if kind == "Vip" else {}, trench="trench-z")
    assert messages([obj]) == [
        f"{kind}/x: metadata.labels.trench: unable to find the trench in label, {kind} cannot be created"]


def test_the_trench_must_be_in_the_same_namespace() -> None:
    obj = make("Conduit", "c", namespace="blue")
    assert "unable to find the trench in label" in " ".join(messages([obj]))


def test_a_file_defining_the_trench_before_its_objects_validates() -> None:
    t = resources.Trench(resources.Metadata("trench-b"))
    assert validation.validate_apply([], [t, make("Conduit", "c", trench="trench-b")]) == []


def test_objects_listed_before_their_trench_are_rejected() -> None:
    t = resources.Trench(resources.Metadata("trench-b"))
    assert len(validation.validate_apply([], [make("Conduit", "c", trench="trench-b"), t])) == 1


# --- cross-object rules -------------------------------------------------------------------------------

def test_a_vip_cannot_be_shared_between_two_attractors() -> None:
    found = messages([attractor("a2", vips=["v1"], composites=["c2"])], [attractor("a1", vips=["v1", "v2"])])
    assert found == ['Attractor/a2: spec.vips: Invalid value: ["v1"]: a vip cannot be shared between 2 attractors '
                     "in this version"]


def test_a_conduit_cannot_be_shared_between_two_attractors() -> None:
    found = messages([attractor("a2", composites=["c"])], [attractor("a1", composites=["c"])])
    assert found == ['Attractor/a2: spec.composites: Invalid value: ["c"]: a conduit cannot be shared between 2 '
                     "attractors in this version"]


def test_attractors_of_different_trenches_may_share_vip_and_conduit_names() -> None:
    other = make("Attractor", "a2", {"composites": ["c"], "vips": ["v"], "interface": {
        "name": "ext", "type": "network-attachment", "network-attachments": [{"name": "n"}]}}, trench="trench-b")
    trench_b = resources.Trench(resources.Metadata("trench-b"))
    assert messages([trench_b, other], [attractor("a1", vips=["v"])]) == []


def test_reapplying_an_attractor_does_not_conflict_with_itself() -> None:
    a = attractor("a1", vips=["v"])
    assert messages([a], [a]) == []


def streams_and_flows() -> list[resources.Resource]:
    return [make("Stream", "s1", {"conduit": "c1"}), make("Stream", "s2", {"conduit": "c2"}),
            make("Stream", "s1b", {"conduit": "c1"}), flow("f1", stream="s1", vips=["v1", "v2"])]


def test_a_vip_shared_by_flows_of_two_conduits_is_a_hard_conflict_with_meridios_message() -> None:
    found = messages([flow("f2", stream="s2", vips=["v2", "v1", "v3"])], streams_and_flows())
    assert found == [
        'Flow/f2: spec.vips: Invalid value: ["v2", "v1", "v3"]: a vip cannot be shared between 2 conduits in this '
        'version: incoming flow "f2" ("s2" (conduit "c2")), flow "f1" (stream "s1" (conduit "c1")) conflicts on '
        "vip(s) [v1, v2]"]


def test_flows_of_the_same_conduit_may_share_vips() -> None:
    assert messages([flow("f2", stream="s1b", vips=["v1"])], streams_and_flows()) == []


def test_a_vip_conflict_with_a_missing_stream_is_only_logged() -> None:
    assert messages([flow("f2", stream="nowhere", vips=["v1"])], streams_and_flows()) == []
    assert messages([flow("f3", stream="s2", vips=["v9"])], [flow("f0", stream="ghost", vips=["v9"])]) == []


def test_a_flow_may_be_updated_without_conflicting_with_itself() -> None:
    assert messages([flow("f1", stream="s1", vips=["v1"])], streams_and_flows()) == []


# --- delete -------------------------------------------------------------------------------------------

def test_deleting_a_trench_removes_everything_of_that_trench_in_its_namespace() -> None:
    other_ns = make("Conduit", "c", namespace="blue")
    other_trench = make("Conduit", "c2", trench="trench-b")
    world = [TRENCH, make("Conduit", "c"), flow(), other_ns, other_trench]
    removed = validation.plan_delete(world, [TRENCH])
    assert [r.ref for r in removed] == [("Trench", "default", "trench-a"), ("Conduit", "default", "c"),
                                        ("Flow", "default", "f")]


def test_deleting_what_does_not_exist_is_reported() -> None:
    assert [str(p) for p in validation.validate_delete([TRENCH], [("Flow", "default", "nope")])] == [
        'Flow/nope: flow "nope" not found in namespace "default"']
    assert validation.validate_delete([TRENCH], [TRENCH]) == []


def test_apply_state_applies_all_or_nothing() -> None:
    state = validation.apply_state([TRENCH], [make("Conduit", "c")])
    assert [r.name for r in state] == ["trench-a", "c"]
    with pytest.raises(validation.ProblemsError):
        validation.apply_state([TRENCH], [make("Conduit", "c2"), make("Stream", "s", {"max-targets": 0})])


@pytest.mark.parametrize("kind", ["Trench", "Conduit", "Stream", "Vip"])
def test_two_objects_of_one_kind_and_name_in_one_apply_are_an_error_naming_both(kind: str) -> None:
    text = ("\n---\n".join([DUPLICATE_TRENCH] + [DUPLICATE_OBJECT.format(kind=kind)] * 2
                                          if kind != "Trench" else [DUPLICATE_TRENCH] * 2))
    with pytest.raises(validation.ProblemsError) as err:
        resources.loads(text, "f.yaml")
    assert [str(p) for p in err.value.problems] == [
        f"{kind}/{'trench-a' if kind == 'Trench' else 'x'}: metadata.name: Duplicate value: "
        f"'{'trench-a' if kind == 'Trench' else 'x'}': documents {1 if kind == 'Trench' else 2} and "
        f"{2 if kind == 'Trench' else 3} of f.yaml are the same {kind}"]


DUPLICATE_TRENCH = """\
apiVersion: meridio.nordix.org/v1
kind: Trench
metadata: {name: trench-a}
spec: {ip-family: dualstack}
"""
DUPLICATE_OBJECT = """\
apiVersion: meridio.nordix.org/v1
kind: {kind}
metadata: {{name: x, labels: {{trench: trench-a}}}}
spec: {{}}
"""
