"""Update rules: immutable fields and trench-label changes, each with the message Meridio gives."""
from __future__ import annotations

from typing import Any

import pytest

from meridio.api import resources, validation
from tests.unit.test_validation import TRENCH, attractor, flow, gateway, make, vlan


def update(old: resources.Resource, new: resources.Resource) -> list[str]:
    return [str(p) for p in validation.validate_apply([TRENCH, old], [new])]


def nad(**fields: Any) -> dict[str, Any]:
    return {"name": "ext", "type": "network-attachment",
            "network-attachments": [{"name": "nad", "namespace": "default", "interface": "eth1", **fields}]}


def trench(ip_family: str) -> resources.Trench:
    return resources.Trench(resources.Metadata("trench-a"), resources.TrenchSpec(ip_family))


UPDATES: list[tuple[str, resources.Resource, resources.Resource, str | None]] = [
    ("trench-same", trench("dualstack"), trench("dualstack"), None),
    ("trench-ip-family", trench("dualstack"), trench("ipv4"),
     "Trench/trench-a: spec.ip-family: Forbidden: updating on ip-family is forbidden"),
    ("max-targets-same", make("Stream", "s", {"max-targets": 5}), make("Stream", "s", {"max-targets": 5, "conduit": "c"}),
     None),
    ("max-targets-change", make("Stream", "s", {"max-targets": 5}), make("Stream", "s", {"max-targets": 6}),
     "Stream/s: spec.max-targets: Forbidden: update on max-targets is forbidden"),
    ("max-targets-set-later", make("Stream", "s"), make("Stream", "s", {"max-targets": 100}),
     "update on max-targets is forbidden"),
    ("flow-priority-change-allowed", flow(priority=1), flow(priority=3), None),
    ("flow-ports-change-allowed", flow(**{"destination-ports": ["4000"]}), flow(**{"destination-ports": ["4000-4002"]}),
     None),
    ("vip-address-change-allowed", make("Vip", "v", {"address": "203.0.113.1/32"}),
     make("Vip", "v", {"address": "203.0.113.2/32"}), None),
    ("attractor-vips-gateways-replicas-allowed", attractor(vips=["v1"]),
     attractor(vips=["v1", "v2"], gateways=["g"], replicas=3), None),
    ("attractor-interface-type", attractor(), attractor(interface=vlan()),
     "Attractor/a: spec.interface.type: Forbidden: update on interface type is forbidden"),
    ("attractor-vlan-id", attractor(interface=vlan()), attractor(interface=vlan(**{"nsm-vlan": {
        "base-interface": "eth0", "vlan-id": 101}})),
     "Attractor/a: spec.interface.nsm-vlan.vlan-id: Forbidden: update on vlan id is forbidden"),
    ("attractor-base-interface", attractor(interface=vlan()), attractor(interface=vlan(**{"nsm-vlan": {
        "base-interface": "eth1", "vlan-id": 100}})),
     "spec.interface.nsm-vlan.base-interface: Forbidden: update on base interface is forbidden"),
    ("attractor-ipv4-prefix", attractor(interface=vlan()), attractor(interface=vlan(**{"ipv4-prefix": "169.254.1.0/24"})),
     "Attractor/a: spec.interface.ipv4-prefix: Forbidden: update on prefix is forbidden"),
    ("attractor-ipv6-prefix", attractor(interface=vlan()), attractor(interface=vlan(**{"ipv6-prefix": "2001:db8:1::/64"})),
     "spec.interface.ipv6-prefix: Forbidden: update on prefix is forbidden"),
    ("attractor-nad-same", attractor(interface=nad()), attractor(interface=nad()), None),
    ("attractor-nad-name", attractor(interface=nad()), attractor(interface=nad(name="nad2")),
     "Attractor/a: spec.interface.network-attachments[0].name: Forbidden: update on name forbidden"),
    ("attractor-nad-namespace", attractor(interface=nad()), attractor(interface=nad(namespace="red")),
     "spec.interface.network-attachments[0].namespace: Forbidden: update on namespace forbidden"),
    ("attractor-nad-interface", attractor(interface=nad()), attractor(interface=nad(interface="eth2")),
     "spec.interface.network-attachments[0].interface: Forbidden: update on interface forbidden"),
    ("attractor-nad-items", attractor(interface=nad()),
     attractor(interface={"name": "ext", "type": "network-attachment", "network-attachments": [
         {"name": "nad", "interface": "eth1"}, {"name": "nad2"}]}),
     "spec.interface.network-attachments: Forbidden: update on network-attachments items forbidden"),
]


@pytest.mark.parametrize("old,new,expected", [u[1:] for u in UPDATES], ids=[u[0] for u in UPDATES])
def test_immutable_fields_cannot_change_and_others_can(
        old: resources.Resource, new: resources.Resource, expected: str | None) -> None:
    found = update(old, new)
    if expected is None:
        assert found == []
    else:
        assert any(expected in m for m in found), found


LABEL_MESSAGES = {
    "Conduit": "update on trench label is forbidden", "Stream": "update on trench label is forbidden",
    "Flow": "update on trench label is forbidden", "Gateway": "update on trench label is forbidden",
    "Attractor": "update on attractor label trench is forbidden", "Vip": "update on vip label trench is forbidden",
}


def relabel(obj: resources.Resource, trench: str) -> resources.Resource:
    doc = resources.to_dict(obj)
    doc["metadata"]["labels"] = {"trench": trench}
    return resources.parse_object(doc)


@pytest.mark.parametrize("kind,message", sorted(LABEL_MESSAGES.items()))
def test_moving_an_object_to_another_trench_is_forbidden_with_the_per_kind_message(kind: str, message: str) -> None:
    old = {"Flow": flow(), "Attractor": attractor(), "Gateway": gateway(),
           "Vip": make("Vip", "x", {"address": "203.0.113.1/32"})}.get(kind) or make(kind, "x")
    trench_b = resources.Trench(resources.Metadata("trench-b"))
    found = [str(p) for p in validation.validate_apply([TRENCH, trench_b, old], [relabel(old, "trench-b")])]
    assert f"{kind}/{old.name}: metadata.labels.trench: Forbidden: {message}" in found


def test_an_update_of_an_object_whose_trench_was_deleted_is_still_checked_but_not_refused_for_it() -> None:
    conduit = make("Conduit", "c")
    assert validation.validate_apply([conduit], [conduit]) == []


def test_every_problem_of_an_update_is_reported() -> None:
    old = attractor(interface=vlan())
    new = attractor(interface=vlan(**{"nsm-vlan": {"base-interface": "eth1", "vlan-id": 7},
                                      "ipv4-prefix": "169.254.1.0/24"}), composites=["c1", "c2"])
    assert len(update(old, new)) == 4
