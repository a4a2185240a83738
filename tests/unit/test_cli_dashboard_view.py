"""The dashboard's view model from hand-made snapshots (pure: no daemon, no clock)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from meridio.cli.dashboard import traffic, view
from meridio.runtime.local import protocol as proto
from tests.unit import dashboard_samples as s

UP, DOWN, IDLE = view.State.UP, view.State.DOWN, view.State.IDLE


def _sessions(v: view.View) -> dict[str, view.SessionView]:
    return {x.id: x for t in v.trenches for g in t.gateways for x in g.sessions}


def _pods(v: view.View) -> dict[str, view.PodView]:
    return {p.name: p for p in v.pods}


def test_everything_running_and_established_is_up_and_placed_in_the_topology() -> None:
    v = view.build(s.snapshot(), s.OBJS)
    (trench,) = v.trenches
    assert v.state is UP and trench.state is UP and trench.pods == ("nsp-t", "ipam-t") and trench.nsp_answers
    (attractor,) = trench.attractors
    assert attractor.replicas == (s.FE0, s.FE1) and attractor.conduits == ("c",) and attractor.vips == ("v4",)
    (conduit,) = trench.conduits
    assert conduit.proxies == ("proxy-c-node-1", "proxy-c-node-2") and conduit.state is UP
    (stream,) = conduit.streams
    assert [t.identifier for t in stream.targets] == ["7", "12"] and stream.pods == (view.TapView("target-0", "OPEN", UP),)
    assert all(p.state is UP for p in v.pods)


def test_each_session_names_the_fe_pod_that_has_the_neighbour_address() -> None:
    sessions = _sessions(view.build(s.snapshot(), s.OBJS))
    assert sorted(sessions) == sorted(f"gw/{a}" for n in (s.FE0, s.FE1) for a in s.ADDRS[n])
    assert sessions["gw/2001:db8:1::2"].frontend == s.FE1 and sessions["gw/169.254.1.1"].frontend == s.FE0
    assert all(x.state is UP and x.bgp == "Established" and x.bfd == "Up" for x in sessions.values())


@pytest.mark.parametrize(("listed", "bgp", "bfd"), [
    (None, "no session", ""),
    (s.session("169.254.1.1", info="Active", bfd="Down"), "Active", "Down"),
    (s.session("169.254.1.1", bfd="Down"), "Established", "Down"),
], ids=["gone-from-the-gateway", "bgp-active", "bfd-down"])
def test_a_session_that_is_not_up_turns_its_fe_its_gateway_and_its_trench_red(listed, bgp, bfd) -> None:  # type: ignore[no-untyped-def]
    others = tuple(s.session(a) for n in (s.FE0, s.FE1) for a in s.ADDRS[n] if a != "169.254.1.1")
    v = view.build(s.snapshot(sessions=others + ((listed,) if listed else ())), s.OBJS)
    broken = _sessions(v)["gw/169.254.1.1"]
    assert (broken.state, broken.bgp, broken.bfd, broken.frontend) == (DOWN, bgp, bfd, s.FE0)
    pods = _pods(v)
    assert pods[s.FE0].state is DOWN and "gw: 169.254.1.1 " + bgp in pods[s.FE0].reason
    assert pods[s.FE1].state is UP and pods[s.FE0].status == "Running"
    (trench,) = v.trenches
    assert trench.gateways[0].state is DOWN and trench.attractors[0].state is DOWN and trench.state is DOWN
    assert v.state is DOWN


def test_a_down_session_with_an_address_no_fe_has_is_idle_not_a_fault() -> None:
    stale = s.session("169.254.1.9", info="Active", bfd="Down")  # BIRD keeps a deleted FE's dynamic peer
    everyone = tuple(s.session(a) for n in (s.FE0, s.FE1) for a in s.ADDRS[n])
    v = view.build(s.snapshot(sessions=everyone + (stale,)), s.OBJS)
    gone = _sessions(v)["gw/169.254.1.9"]
    assert (gone.state, gone.frontend, gone.bgp) == (IDLE, "", "Active")
    assert v.trenches[0].gateways[0].state is UP and v.state is UP


def test_a_gateway_without_bgp_expects_no_session_and_is_idle() -> None:
    snap = s.snapshot(sessions=())
    snap = dataclasses.replace(snap, routers=(dataclasses.replace(snap.routers[0], families=()),))
    v = view.build(snap, s.OBJS)
    assert v.trenches[0].gateways[0].sessions == () and v.trenches[0].gateways[0].state is IDLE
    assert _pods(v)[s.FE0].state is UP


def test_a_gateway_peering_over_ipv4_only_expects_no_ipv6_session() -> None:
    snap = s.snapshot(sessions=(s.session("169.254.1.1"), s.session("169.254.1.2")))
    snap = dataclasses.replace(snap, routers=(dataclasses.replace(snap.routers[0], families=(4,)),))
    assert sorted(_sessions(view.build(snap, s.OBJS))) == ["gw/169.254.1.1", "gw/169.254.1.2"]


@pytest.mark.parametrize(("status", "reason", "state"), [
    ("Pending", "0/2 nodes are available", IDLE), ("NotReady", "", DOWN), ("Blocked", "no such NAD", DOWN)],
    ids=["pending-is-idle", "not-ready", "blocked"])
def test_pod_states_map_to_colours_with_the_runtime_reason(status, reason, state) -> None:  # type: ignore[no-untyped-def]
    snap = s.snapshot()
    snap = dataclasses.replace(snap, pods=tuple(dataclasses.replace(p, state=status, reason=reason)
                                                if p.name == "proxy-c-node-2" else p for p in snap.pods))
    proxy = _pods(view.build(snap, s.OBJS))["proxy-c-node-2"]
    assert proxy.state is state and proxy.reason == (reason or status) and proxy.status == status


def test_an_nsp_that_does_not_answer_turns_the_trench_and_its_streams_red() -> None:
    v = view.build(s.snapshot(streams={"t": None}), s.OBJS)
    (trench,) = v.trenches
    assert not trench.nsp_answers and trench.state is DOWN
    assert trench.conduits[0].streams[0].state is DOWN and trench.conduits[0].streams[0].targets == ()


def test_a_disabled_target_and_a_pending_tap_are_red() -> None:
    snap = s.snapshot(targets={"target-0": (proto.StreamStatus("PENDING", "s", "c", "t"),)},
                      streams={"t": (proto.RegisteredTarget("s", "c", "7", "DISABLED", ()),)})
    (stream,) = view.build(snap, s.OBJS).trenches[0].conduits[0].streams
    assert stream.targets[0].state is DOWN and stream.pods[0].state is DOWN and stream.state is DOWN


def test_a_stream_without_targets_is_idle() -> None:
    (stream,) = view.build(s.snapshot(targets={}, streams={"t": ()}), s.OBJS).trenches[0].conduits[0].streams
    assert stream.state is IDLE and stream.targets == () and stream.pods == ()


def test_the_runtime_reasons_are_what_is_not_ready() -> None:
    v = view.build(s.snapshot(not_ready=("pod target-0: stream s PENDING",), problems=("Vip/x: no such trench",)),
                   s.OBJS)
    assert v.not_ready == ("pod target-0: stream s PENDING", "Vip/x: no such trench") and v.state is DOWN


def test_targets_carry_the_rates_of_their_key() -> None:
    rates = {traffic.TargetKey("t", "c", "s", "7"): traffic.Rate(12.5, 1250.0, 100.0, 10000.0)}
    targets = {t.identifier: t for t in view.build(s.snapshot(), s.OBJS, rates).trenches[0].conduits[0].streams[0].targets}
    assert (targets["7"].packets_per_s, targets["7"].bytes_per_s, targets["7"].packets) == (12.5, 1250.0, 100.0)
    assert (targets["12"].packets_per_s, targets["12"].packets) == (None, None)


def test_the_view_encodes_as_json_with_states_as_strings() -> None:
    data = json.loads(json.dumps(view.to_json(view.build(s.snapshot(), s.OBJS))))
    assert data["state"] == "up" and data["environment"] == "lab"
    assert {p["name"]: p["state"] for p in data["pods"]}[s.FE0] == "up"
    assert data["trenches"][0]["gateways"][0]["sessions"][0]["id"].startswith("gw/")


def test_without_a_snapshot_the_view_only_says_why() -> None:
    v = view.down("lab", "no status from environment 'lab'")
    assert v.state is DOWN and v.error and v.not_ready == (v.error,) and v.pods == () and v.trenches == ()
