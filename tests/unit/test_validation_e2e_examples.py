"""The e2e configuration in examples/e2e: every scenario validates and renders as the e2e suite applies it
(on top of both trenches, then reverted), and broken variants are rejected with Meridio's message."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest

from meridio.api import configmap, resources, validation

E2E = pathlib.Path(__file__).resolve().parents[2] / "examples" / "e2e"
SCENARIOS = ["new-vip", "new-flow", "new-stream", "stream-max-targets", "flow-priority",
             "flow-destination-ports-range", "flow-byte-matches", "conduit-destination-port-nats", "new-attractor"]
# What each scenario's revert deletes (the rest is reverted by re-applying init-trench-a.yaml).
ADDED = {"new-vip": ["vip-a-2-v4", "vip-a-2-v6"], "new-flow": ["flow-a-x-tcp"],
         "new-stream": ["stream-a-iii", "flow-a-x-tcp"], "stream-max-targets": ["stream-a-iii", "flow-a-x-tcp"],
         "new-attractor": None}


def load(name: str) -> list[resources.Resource]:
    return resources.load_file(E2E / f"{name}.yaml")


def apply(state: list[resources.Resource], incoming: list[resources.Resource]) -> list[resources.Resource]:
    return validation.apply_state(state, incoming)


def revert(state: list[resources.Resource], scenario: str) -> list[resources.Resource]:
    added = ADDED.get(scenario, [])
    if added is None:  # kubectl delete -f <file>
        return [r for r in state if r not in validation.plan_delete(state, load(scenario))]
    state = apply(state, load("init-trench-a"))
    return [r for r in state if r.name not in added]


@pytest.fixture(scope="module")
def initial() -> list[resources.Resource]:
    return apply(apply([], load("init-trench-a")), load("init-trench-b"))


def test_both_trenches_validate_and_are_dual_stack(initial: list[resources.Resource]) -> None:
    trenches = [r for r in initial if isinstance(r, resources.Trench)]
    assert [(t.name, t.spec.ip_family) for t in trenches] == [("trench-a", "dualstack"), ("trench-b", "dualstack")]


def test_every_scenario_applies_on_the_initial_state_and_reverts_cleanly(initial: list[resources.Resource]) -> None:
    state = initial
    for scenario in SCENARIOS:
        assert validation.validate_apply(state, load(scenario)) == [], scenario
        state = revert(apply(state, load(scenario)), scenario)
        assert sorted(r.ref for r in state) == sorted(r.ref for r in initial), scenario


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_renders_a_configmap_the_nsp_accepts(initial: list[resources.Resource], scenario: str) -> None:
    state = apply(initial, load(scenario))
    for trench in ("trench-a", "trench-b"):
        cfg = configmap.loads(configmap.render_manifest(state, trench, "red"))
        assert cfg.trench is not None and cfg.trench.name == trench and cfg.flows


def test_trench_b_reuses_trench_a_vip_addresses_in_isolation(initial: list[resources.Resource]) -> None:
    a = configmap.parse(configmap.render(initial, "trench-a", "red"))
    b = configmap.parse(configmap.render(initial, "trench-b", "red"))
    assert {v.address for v in b.vips} <= {v.address for v in a.vips}
    assert {g.address for g in b.gateways} == {"169.254.100.150", "2001:db8:100::150"}


def test_flow_priority_overlaps_flow_a_y_tcp_with_a_higher_priority(initial: list[resources.Resource]) -> None:
    cfg = configmap.parse(configmap.render(apply(initial, load("flow-priority")), "trench-a", "red"))
    prio = {f.name: (f.priority, f.destination_port_ranges) for f in cfg.flows}
    assert prio["flow-a-z-tcp"] == (3, ("4000", "4001")) and prio["flow-a-y-tcp"] == (2, ("4001",))


def test_stream_max_targets_reaches_the_nsp_model(initial: list[resources.Resource]) -> None:
    cfg = configmap.parse(configmap.render(apply(initial, load("stream-max-targets")), "trench-a", "red"))
    assert {s.name: s.max_targets for s in cfg.streams}["stream-a-iii"] == 1


# --- broken variants ----------------------------------------------------------------------------------

def edited(name: str, obj_name: str, **spec: Any) -> resources.Resource:
    obj = next(o for o in load(name) if o.name == obj_name)
    return dataclasses.replace(obj, spec=dataclasses.replace(obj.spec, **spec))  # type: ignore[arg-type]


def test_new_vip_and_new_attractor_together_share_a_vip_between_two_attractors(
        initial: list[resources.Resource]) -> None:
    found = [str(p) for p in validation.validate_apply(apply(initial, load("new-vip")), load("new-attractor"))]
    assert ('Attractor/attractor-a-3: spec.vips: Invalid value: ["vip-a-2-v4", "vip-a-2-v6"]: a vip cannot be shared '
            "between 2 attractors in this version") in found
    assert any("a vip cannot be shared between 2 conduits in this version" in m for m in found)


def test_a_flow_with_ports_4000_3000_is_rejected(initial: list[resources.Resource]) -> None:
    bad = edited("flow-destination-ports-range", "flow-a-z-tcp", destination_ports=("4000-3000",))
    assert [str(p) for p in validation.validate_apply(initial, [bad])] == [
        'Flow/flow-a-z-tcp: spec.destination-ports: Invalid value: "4000-3000": destination port[0]: starting port '
        "cannot be larger than ending port in the ports range"]


def test_changing_the_trench_ip_family_is_rejected(initial: list[resources.Resource]) -> None:
    bad = edited("init-trench-a", "trench-a", ip_family="ipv4")
    assert [str(p) for p in validation.validate_apply(initial, [bad])] == [
        "Trench/trench-a: spec.ip-family: Forbidden: updating on ip-family is forbidden"]


def test_changing_max_targets_of_an_existing_stream_is_rejected(initial: list[resources.Resource]) -> None:
    state = apply(initial, load("new-stream"))
    assert [str(p) for p in validation.validate_apply(state, load("stream-max-targets"))] == [
        "Stream/stream-a-iii: spec.max-targets: Forbidden: update on max-targets is forbidden"]


def test_a_second_composite_is_rejected(initial: list[resources.Resource]) -> None:
    bad = edited("init-trench-a", "attractor-a-1", composites=("conduit-a-1", "conduit-a-3"))
    assert [str(p) for p in validation.validate_apply(initial, [bad])] == [
        'Attractor/attractor-a-1: spec.composites: Invalid value: ["conduit-a-1", "conduit-a-3"]: only one composite '
        "per attractor is supported in the current version"]


def test_moving_new_attractors_conduit_to_attractor_a_1_is_a_shared_conduit(initial: list[resources.Resource]) -> None:
    bad = edited("new-attractor", "attractor-a-3", composites=("conduit-a-1",))
    found = [str(p) for p in validation.validate_apply(initial, [bad])]
    assert any("a conduit cannot be shared between 2 attractors in this version" in m for m in found)
