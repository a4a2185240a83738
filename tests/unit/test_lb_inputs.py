"""The LB daemon's view of the NSP (pure): readiness gating, frontend blocking, skipped bad input."""
from __future__ import annotations

from meridio.api import model
from meridio.loadbalancer.inputs import Inputs

TRENCH = model.Trench("trench-a")
CONDUIT = model.Conduit("conduit-a", TRENCH, (model.PortNat(80, 4000, "tcp", (model.Vip("v4", "203.0.113.10/32"),)),))
STREAM = model.Stream("stream-a", CONDUIT, 10)
VIPS = [model.Vip("v4", "203.0.113.10/32", TRENCH), model.Vip("v6", "2001:db8:f::10/128", TRENCH)]
FLOW = model.Flow("flow-a", STREAM, 1, ("tcp",), (), (), ("80",), tuple(VIPS))
FE = model.Target.make(["lb-a"], {"identifier": "lb-a"}, type=model.TargetType.FRONTEND)


def target(ip: str, identifier: str, **kw: object) -> model.Target:
    return model.Target.make([ip], {"identifier": identifier}, stream=STREAM, **kw)  # type: ignore[arg-type]


def complete(**kw: object) -> Inputs:
    inputs = Inputs("lb-a", vips=list(VIPS), frontends=[FE])
    inputs.set_conduit([CONDUIT], "conduit-a")
    inputs.set_streams([STREAM])
    inputs.flows["stream-a"] = [FLOW]
    inputs.targets["stream-a"] = [target("172.16.1.6/24", "1"), target("172.16.1.7/24", "2")]
    for key, value in kw.items():
        setattr(inputs, key, value)
    return inputs


def test_nothing_is_ready_until_every_watch_has_answered_once() -> None:
    inputs = Inputs("lb-a")
    inputs.vips = VIPS
    inputs.set_conduit([], "conduit-a")
    inputs.frontends = []
    assert not inputs.ready()
    inputs.set_streams([STREAM])
    inputs.flows["stream-a"] = []
    assert not inputs.ready()  # the stream's targets have not been seen yet
    inputs.targets["stream-a"] = []
    assert inputs.ready()


def test_a_stream_that_goes_forgets_its_flows_and_targets() -> None:
    inputs = complete()
    added, removed = inputs.set_streams([])
    assert (added, removed) == (set(), {"stream-a"})
    assert inputs.flows == {} and inputs.targets == {}


def test_the_desired_state_holds_valid_streams_flows_nats_and_targets() -> None:
    desired, problems = complete().desired()
    assert problems == []
    assert [str(v) for v in desired.vips] == ["203.0.113.10/32", "2001:db8:f::10/128"]
    assert [(s.name, s.max_targets, [t.identifier for t in s.targets]) for s in desired.streams] == [
        ("stream-a", 10, [1, 2])]
    assert [f.name for f in desired.flows] == ["flow-a"]
    assert [n.name for n in desired.port_nats] == ["80-4000-tcp"]


def test_without_the_frontend_of_this_pod_the_lb_is_blocked_and_programs_no_stream() -> None:
    other = model.Target.make(["lb-b"], {"identifier": "lb-b"}, type=model.TargetType.FRONTEND)
    inputs = complete(frontends=[other])
    assert inputs.blocked()
    desired, _ = inputs.desired()
    assert desired.streams == () and desired.flows == () and len(desired.vips) == 2


def test_bad_targets_are_skipped_with_a_reason_and_duplicates_keep_the_first() -> None:
    inputs = complete()
    inputs.targets["stream-a"] = [
        target("172.16.1.6/24", "1"), target("172.16.1.5/24", "1"), target("172.16.1.7/24", "11"),
        target("172.16.1.8/24", "x"), target("172.16.1.9/24", "3", status=model.TargetStatus.DISABLED)]
    desired, problems = inputs.desired()
    assert [(t.identifier, str(t.ips[0])) for t in desired.streams[0].targets] == [(1, "172.16.1.5")]
    assert sorted(p.rule for p in problems) == ["'x' is not a numeric identifier",
                                                "1 is already used in stream 'stream-a'",
                                                "11 is outside 1..10 (the stream's max-targets)"]


def test_a_bad_flow_is_skipped_and_the_others_stay() -> None:
    bad = model.Flow("bad", STREAM, 1, ("tcp",), (), (), ("80-70",), tuple(VIPS))
    inputs = complete()
    inputs.flows["stream-a"] = [FLOW, bad]
    desired, problems = inputs.desired()
    assert [f.name for f in desired.flows] == ["flow-a"]
    assert [str(p) for p in problems] == [
        "flow 'bad': destination port[0]: starting port cannot be larger than ending port in the ports range"]


def test_a_stream_without_max_targets_gets_100_as_meridio() -> None:
    inputs = complete()
    inputs.set_streams([model.Stream("stream-a", CONDUIT, 0)])
    desired, _ = inputs.desired()
    assert desired.streams[0].max_targets == 100


def test_a_port_nat_without_vips_applies_to_every_vip_of_the_trench() -> None:
    inputs = complete()
    inputs.set_conduit([model.Conduit("conduit-a", TRENCH, (model.PortNat(80, 4000, "udp"),))], "conduit-a")
    desired, _ = inputs.desired()
    assert [str(v) for v in desired.port_nats[0].vips] == ["203.0.113.10/32", "2001:db8:f::10/128"]
