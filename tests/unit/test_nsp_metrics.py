"""The NSP's metric families from hand-made state, and the counts the NSP keeps for them."""
from __future__ import annotations

import pathlib
from typing import Any

from meridio.api import model as m
from meridio.common.clock import FakeClock
from meridio.nsp import config, metrics, source, targets
from meridio.nsp.registry import Registry
from tests.unit.test_nsp_source import fake_parse

TA = m.Trench("trench-a")
C1 = m.Conduit("conduit-a-1", TA)
S1 = m.Stream("stream-a-i", C1, 100)
CONFIG = m.Configuration(trench=TA, conduits=(C1,), streams=(S1, m.Stream("stream-a-ii", C1, 100)))
ENABLED, DISABLED = m.TargetStatus.ENABLED, m.TargetStatus.DISABLED


def samples_of(fams: list[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {s.name: [(x.labels, x.value) for x in f.samples if x.name == s.name] for f in fams for s in f.samples}


def values(fams: list[Any], name: str, label: str) -> dict[str, float]:
    return {labels[label]: v for labels, v in samples_of(fams)[name]}


def target(ip: str, status: m.TargetStatus = ENABLED, kind: m.TargetType = m.TargetType.DEFAULT) -> m.Target:
    return m.Target.make(ips=[ip], context={"identifier": ip[-1]}, status=status, type=kind, stream=S1)


def test_every_family_is_labelled_with_the_trench_and_lists_every_kind() -> None:
    fams = metrics.families(cfg=CONFIG, config_watchers={config.Kind.STREAM: 2, config.Kind.TRENCH: 1},
                            target_watchers=3, registered=(), loads={source.LoadResult.APPLIED: 1},
                            operations={targets.Operation.REGISTER: 4})
    got = samples_of(fams)
    assert got["meridio_nsp_watchers"] == [
        ({"trench": "trench-a", "kind": k}, v) for k, v in
        [("trench", 1), ("conduit", 0), ("stream", 2), ("flow", 0), ("vip", 0), ("attractor", 0), ("gateway", 0),
         ("target", 3)]]
    assert values(fams, "meridio_nsp_configuration_resources", "kind") == {
        "trench": 1, "conduit": 1, "stream": 2, "flow": 0, "vip": 0, "attractor": 0, "gateway": 0}
    assert got["meridio_nsp_configuration_loads_total"] == [
        ({"trench": "trench-a", "result": "applied"}, 1), ({"trench": "trench-a", "result": "rejected"}, 0)]
    assert values(fams, "meridio_nsp_registry_operations_total", "op") == {
        "register": 4, "update": 0, "refresh": 0, "unregister": 0, "expired": 0}
    assert {x.labels["trench"] for f in fams for x in f.samples} == {"trench-a"}


def test_targets_are_counted_by_type_and_status_with_zeros() -> None:
    registered = [target("10.0.0.1"), target("10.0.0.2"), target("10.0.0.3", DISABLED),
                  target("10.0.0.4", kind=m.TargetType.FRONTEND)]
    fams = metrics.families(cfg=CONFIG, config_watchers={}, target_watchers=0, registered=registered, loads={},
                            operations={})
    got = {(labels["type"], labels["status"]): v for labels, v in samples_of(fams)["meridio_nsp_targets"]}
    assert got == {("default", "enabled"): 2, ("default", "disabled"): 1, ("frontend", "enabled"): 1,
                   ("frontend", "disabled"): 0, ("loadbalancer", "enabled"): 0, ("loadbalancer", "disabled"): 0}


def test_without_a_configured_trench_the_label_is_empty_and_the_trench_count_zero() -> None:
    fams = metrics.families(cfg=m.Configuration(), config_watchers={}, target_watchers=0, registered=(),
                            loads={}, operations={})
    resources = samples_of(fams)["meridio_nsp_configuration_resources"]
    assert resources[0] == ({"trench": "", "kind": "trench"}, 0)


def test_the_configuration_manager_counts_its_watchers_per_kind() -> None:
    manager = config.ConfigurationManager(CONFIG)
    a = manager.subscribe(config.Kind.STREAM, None)
    manager.subscribe(config.Kind.STREAM, None)
    manager.subscribe(config.Kind.VIP, None)
    assert manager.watchers_by_kind()[config.Kind.STREAM] == 2
    manager.unsubscribe(a)
    counts = manager.watchers_by_kind()
    assert (counts[config.Kind.STREAM], counts[config.Kind.VIP], counts[config.Kind.FLOW]) == (1, 1, 0)
    manager.close()
    assert set(manager.watchers_by_kind().values()) == {0}


def test_the_registry_counts_register_update_refresh_unregister_and_expiry() -> None:
    clock = FakeClock()
    owner = targets.Targets(Registry(clock=clock, timeout=60), None)
    owner.register(target("10.0.0.1"))  # new: stored DISABLED
    owner.register(target("10.0.0.1"))  # ENABLED now: an update
    owner.register(target("10.0.0.1"))  # unchanged: a refresh
    owner.register(target("10.0.0.2"))
    owner.unregister(target("10.0.0.2"))
    owner.unregister(target("10.0.0.9"))  # unknown: nothing removed, nothing counted
    clock.advance(61)
    owner.expire_due()
    moved = m.Stream("stream-a-i", m.Conduit("conduit-a-2", TA), 100)  # same stream name elsewhere
    owner.register(target("10.0.0.3"))
    owner.register(m.Target.make(ips=["10.0.0.4"], context={"identifier": "4"}, stream=moved))
    assert {op.value: n for op, n in owner.operations.items()} == {
        "register": 4, "update": 1, "refresh": 1, "unregister": 1, "expired": 1}


def test_the_file_source_counts_applied_and_rejected_contents(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config.json"
    files = source.FileSource(str(path), parse=fake_parse)
    files.poll()  # missing: neither
    path.write_text('{"trench": "a"}')
    files.poll()
    files.poll()  # unchanged: not counted again
    path.write_text('{"colour": "blue"}')
    files.poll()
    assert files.loads == {source.LoadResult.APPLIED: 1, source.LoadResult.REJECTED: 1}
