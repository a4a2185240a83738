"""Target registry core: IDs, forced DISABLED, updates, keys, keepalive expiry (FakeClock), validation, scope."""
from __future__ import annotations

import dataclasses

import pytest

from meridio.api import model as m
from meridio.common.clock import FakeClock
from meridio.nsp import registry, targets
from meridio.nsp.registry import InvalidTarget, Registry

TA = m.Trench("trench-a")
C1 = m.Conduit("conduit-a-1", TA)
S1 = m.Stream("stream-a-i", C1, 100)
ENABLED, DISABLED, ANY = m.TargetStatus.ENABLED, m.TargetStatus.DISABLED, m.TargetStatus.ANY


def target(ip: str = "172.16.1.6/24", ident: str = "1", stream: m.Stream | None = S1,
           status: m.TargetStatus = ENABLED, **kw: object) -> m.Target:
    return m.Target.make(ips=[ip, "fd00:0:0:1::6/64"], context={"identifier": ident}, status=status,
                         stream=stream, **kw)  # type: ignore[arg-type]


def register(reg: Registry, t: m.Target) -> registry.Change:
    change = reg.plan_register(t)
    reg.apply(change)
    return change


def test_target_id_follows_meridio_format() -> None:
    assert registry.target_id(target()) == "172.16.1.6/24;fd00:0:0:1::6/64-0-stream-a-i.conduit-a-1.trench-a"


def test_target_id_of_a_frontend_without_stream_has_empty_parents() -> None:
    fe = m.Target.make(ips=["fe-host-1"], context={"identifier": "fe-host-1"}, type=m.TargetType.FRONTEND)
    assert registry.target_id(fe) == "fe-host-1-1-.."


def test_target_id_of_a_loadbalancer_without_ips_uses_its_identifier() -> None:
    lb = m.Target.make(context={"identifier": "lb-0"}, type=m.TargetType.LOADBALANCER, stream=m.Stream("", C1))
    assert registry.target_id(lb) == "lb-0-2-.conduit-a-1.trench-a"


def test_registering_an_unknown_target_forces_status_disabled() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target(status=ENABLED))
    assert [t.status for t in reg.targets()] == [DISABLED]


def test_registering_a_known_target_updates_status_and_context() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target(status=DISABLED))
    change = register(reg, target(status=ENABLED, ident="7"))
    assert change.modifies_targets
    (t,) = reg.targets()
    assert (t.status, t.identifier) == (ENABLED, "7")


def test_a_pure_refresh_does_not_modify_the_target_list() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target())
    change = register(reg, target(status=DISABLED))
    assert not change.modifies_targets and change.refresh


def test_a_target_expires_after_the_timeout_without_refresh() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock, timeout=60)
    register(reg, target())
    clock.advance(59.9)
    assert reg.plan_expiry().delete == ()
    clock.advance(0.1)
    expired = reg.plan_expiry()
    reg.apply(expired)
    assert expired.delete and len(reg) == 0


def test_a_refresh_restarts_the_keepalive_timer() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock, timeout=60)
    register(reg, target())
    clock.advance(50)
    register(reg, target())
    clock.advance(50)
    assert reg.plan_expiry().delete == ()
    clock.advance(10)
    assert len(reg.plan_expiry().delete) == 1


def test_restored_targets_get_fresh_timers() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock, timeout=60)
    reg.restore([target(status=ENABLED)])
    clock.advance(59)
    assert reg.plan_expiry().delete == ()
    assert reg.targets()[0].status == ENABLED  # restored as stored, not forced DISABLED
    clock.advance(1)
    assert len(reg.plan_expiry().delete) == 1


def test_registering_a_restored_target_updates_it_rather_than_forcing_disabled() -> None:
    reg = Registry(clock=FakeClock())
    reg.restore([target(status=ENABLED)])
    register(reg, target(status=ENABLED))
    assert reg.targets()[0].status == ENABLED


def test_unregister_removes_the_target_and_unknown_targets_are_a_no_op() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target())
    assert reg.plan_unregister(target(ip="172.16.1.99/24")) == registry.Change()
    reg.apply(reg.plan_unregister(target(status=ENABLED, ident="other")))
    assert len(reg) == 0


def test_a_registration_in_a_made_up_trench_leaves_a_same_named_stream_of_the_real_trench_alone() -> None:
    # The attack: one Register for stream-a-i of trench "evil" removed all four real targets.
    reg = Registry(clock=FakeClock())
    real = [target(ip=f"172.16.1.{i}/24", ident=str(i)) for i in range(1, 5)]
    for t in real:
        register(reg, t)
    evil = m.Stream("stream-a-i", m.Conduit("conduit-a-1", m.Trench("evil")), 100)
    change = register(reg, target(ip="10.66.6.6/32", stream=evil))
    assert change.delete == ()
    assert len(reg) == 5 and all(registry.target_id(t) in reg for t in map(registry.normalize, real))


def test_a_stream_moved_to_another_conduit_keeps_the_old_entries_until_they_expire() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock, timeout=60)
    register(reg, target(ip="172.16.1.6/24"))
    clock.advance(30)
    moved = m.Stream("stream-a-i", m.Conduit("conduit-a-2", TA), 100)
    change = register(reg, target(ip="172.16.2.6/24", stream=moved))
    assert change.delete == () and len(reg) == 2
    clock.advance(31)  # the old entry is not refreshed any more: the keepalive removes it
    reg.apply(reg.plan_expiry())
    assert [t.stream.conduit.name for t in reg.targets()] == ["conduit-a-2"]  # type: ignore[union-attr]


def test_an_identifier_collision_in_one_stream_is_not_a_conflict() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target(ip="172.16.1.6/24", ident="5"))
    change = register(reg, target(ip="172.16.1.7/24", ident="5"))
    assert change.delete == () and len(reg) == 2


def test_the_same_ips_in_another_stream_are_not_a_conflict() -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target(stream=S1))
    register(reg, target(stream=m.Stream("stream-a-ii", C1, 100)))
    assert len(reg) == 2


def test_targets_without_stream_never_conflict() -> None:
    reg = Registry(clock=FakeClock())
    for host in ("fe-1", "fe-2"):
        register(reg, m.Target.make(ips=[host], type=m.TargetType.FRONTEND))
    register(reg, m.Target.make(context={"identifier": "lb-0"}, type=m.TargetType.LOADBALANCER,
                                stream=m.Stream("", C1)))
    assert len(reg) == 3


def test_port_nats_of_the_conduit_are_not_stored_with_a_target() -> None:
    reg = Registry(clock=FakeClock())
    nat = m.PortNat(80, 4000, "tcp")
    register(reg, target(stream=m.Stream("stream-a-i", dataclasses.replace(C1, destination_port_nats=(nat,)), 100)))
    assert reg.targets()[0].stream == S1


@pytest.mark.parametrize("bad, field", [
    pytest.param(target(status=ANY), "target.status", id="status ANY"),
    pytest.param(m.Target.make(stream=S1), "target.ips", id="DEFAULT without ips"),
    pytest.param(m.Target.make(ips=["", "10.0.0.1"], stream=S1), "target.ips[0]", id="empty ip"),
    pytest.param(target(stream=None), "target.stream.name", id="DEFAULT without stream"),
    pytest.param(target(stream=m.Stream("s")), "target.stream.conduit.name", id="DEFAULT without conduit"),
    pytest.param(target(stream=m.Stream("s", m.Conduit("c"))), "target.stream.conduit.trench.name",
                 id="DEFAULT without trench"),
    pytest.param(m.Target.make(type=m.TargetType.FRONTEND), "target.ips", id="FRONTEND without hostname"),
    pytest.param(m.Target.make(type=m.TargetType.LOADBALANCER, context={"identifier": "lb"}),
                 "target.stream.conduit.name", id="LOADBALANCER without conduit"),
    pytest.param(m.Target.make(type=m.TargetType.LOADBALANCER, stream=m.Stream("", C1)),
                 'target.context["identifier"]', id="LOADBALANCER without identifier"),
    pytest.param(target(ip="not-an-ip"), "target.ips[0]", id="not an ip"),
    pytest.param(target(ip="10.0.0.1/33"), "target.ips[0]", id="prefix length too long"),
    pytest.param(m.Target.make(ips=[f"10.0.0.{i}" for i in range(33)], context={"identifier": "1"}, stream=S1),
                 "target.ips", id="33 ips"),
    pytest.param(target(ip="1" * 1_000_000), "target.ips[0]", id="1 MB ip"),
    pytest.param(m.Target.make(ips=["Not_A_Host!"], type=m.TargetType.FRONTEND), "target.ips[0]",
                 id="FRONTEND hostname not a name"),
    pytest.param(m.Target.make(ips=["10.0.0.1"], context={f"k{i}": "v" for i in range(17)}, stream=S1),
                 "target.context", id="17 context entries"),
    pytest.param(m.Target.make(ips=["10.0.0.1"], context={"identifier": "x" * 1_000_000}, stream=S1),
                 "target.context['identifier']", id="1 MB context value"),
    pytest.param(m.Target.make(ips=["10.0.0.1"], context={"k" * 64: "v"}, stream=S1),
                 "target.context key", id="long context key"),
    pytest.param(target(stream=m.Stream("s" * 254, C1)), "target.stream.name", id="254-character stream name"),
    pytest.param(target(stream=m.Stream("stream-a-i", m.Conduit("Conduit A", TA))), "target.stream.conduit.name",
                 id="conduit name not DNS-1123"),
    pytest.param(target(stream=m.Stream("s", m.Conduit("c", m.Trench("t" * 1_000_000)))),
                 "target.stream.conduit.trench.name", id="1 MB trench name"),
    pytest.param(target(stream=m.Stream("stream-a-i", C1, -1)), "target.stream.maxTargets",
                 id="negative maxTargets"),
])
def test_invalid_targets_are_rejected_naming_the_field_and_nothing_changes(bad: m.Target, field: str) -> None:
    reg = Registry(clock=FakeClock())
    register(reg, target())
    before = reg.targets()
    with pytest.raises(InvalidTarget) as err:
        reg.plan_register(bad)
    assert str(err.value).startswith(field + ":")
    assert len(str(err.value)) < 250  # a rejected 1 MB value is quoted truncated, never echoed
    assert reg.targets() == before


def test_the_largest_target_the_limits_allow_is_accepted() -> None:
    reg = Registry(clock=FakeClock())
    context = {"identifier": "1", **{f"k{i:02d}": "v" * 256 for i in range(15)}}
    big = m.Target.make(ips=[f"172.16.1.{i}/24" for i in range(1, 33)], context=context,
                        stream=m.Stream("s" * 253, m.Conduit("c" * 253, m.Trench("t" * 253))))
    register(reg, big)
    assert len(reg) == 1


CONFIG = m.Configuration(TA, (C1, m.Conduit("conduit-a-2", TA)), (S1,))


@pytest.mark.parametrize("t", [
    pytest.param(target(), id="DEFAULT in a configured stream"),
    pytest.param(m.Target.make(ips=["fe-1"], type=m.TargetType.FRONTEND), id="FRONTEND"),
    pytest.param(m.Target.make(context={"identifier": "lb-0"}, type=m.TargetType.LOADBALANCER,
                               stream=m.Stream("", m.Conduit("conduit-a-2", TA))), id="LOADBALANCER"),
])
def test_targets_of_the_configured_trench_conduit_and_stream_are_in_scope(t: m.Target) -> None:
    registry.check_scope(t, CONFIG)


@pytest.mark.parametrize("t, error, message", [
    pytest.param(target(stream=m.Stream("stream-a-i", m.Conduit("conduit-a-1", m.Trench("evil")))),
                 InvalidTarget, "target.stream.conduit.trench.name: 'evil' is not the trench of this NSP",
                 id="another trench"),
    pytest.param(target(stream=m.Stream("stream-a-i", m.Conduit("conduit-a-9", TA))), registry.NotConfigured,
                 "target.stream.conduit.name: conduit 'conduit-a-9' is not configured", id="unknown conduit"),
    pytest.param(target(stream=m.Stream("stream-a-i", m.Conduit("conduit-a-2", TA))), registry.NotConfigured,
                 "target.stream.name: stream 'stream-a-i' is not configured in conduit 'conduit-a-2'",
                 id="stream of another conduit"),
    pytest.param(target(stream=m.Stream("stream-z", C1)), registry.NotConfigured,
                 "target.stream.name: stream 'stream-z' is not configured", id="unknown stream"),
    pytest.param(m.Target.make(context={"identifier": "lb-0"}, type=m.TargetType.LOADBALANCER,
                               stream=m.Stream("", m.Conduit("conduit-a-9", TA))), registry.NotConfigured,
                 "target.stream.conduit.name: conduit 'conduit-a-9'", id="LOADBALANCER of an unknown conduit"),
])
def test_targets_outside_the_configuration_are_refused(t: m.Target, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        registry.check_scope(t, CONFIG)
    assert str(err.value).startswith(message)


def test_without_a_configured_trench_every_target_waits() -> None:
    with pytest.raises(registry.NotConfigured, match="no trench configured yet"):
        registry.check_scope(m.Target.make(ips=["fe-1"], type=m.TargetType.FRONTEND), m.Configuration())


# --- Targets (the owner): watchers and dedupe, without a database ----------------------------------

def test_target_watchers_get_their_filtered_list_only_when_it_changes() -> None:
    clock = FakeClock()
    owner = targets.Targets(Registry(clock=clock, timeout=60), None)
    enabled_s1 = owner.subscribe(m.Target(stream=m.Stream("stream-a-i")))
    any_s1 = owner.subscribe(m.Target(status=ANY, stream=m.Stream("stream-a-i")))
    frontends = owner.subscribe(m.Target(status=ANY, type=m.TargetType.FRONTEND))
    assert (enabled_s1.take(), any_s1.take(), frontends.take()) == ((), (), ())

    owner.register(target())  # stored DISABLED
    assert enabled_s1.take() is None
    assert [t.status for t in any_s1.take() or ()] == [DISABLED]
    owner.register(target(status=ENABLED))
    assert [t.status for t in enabled_s1.take() or ()] == [ENABLED]
    assert [t.status for t in any_s1.take() or ()] == [ENABLED]
    owner.register(target(status=ENABLED))  # refresh only
    assert (enabled_s1.take(), any_s1.take(), frontends.take()) == (None, None, None)

    clock.advance(60)
    assert len(owner.expire_due()) == 1
    assert enabled_s1.take() == () and any_s1.take() == ()
    assert frontends.take() is None
