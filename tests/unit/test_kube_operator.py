"""The operator's pure core: the namespace's objects → the trench ConfigMaps and each object's Ready
condition; the condition patch moves lastTransitionTime only when the status changes."""
from __future__ import annotations

import datetime
import pathlib

from meridio.api import configmap, resources
from meridio.runtime.kubernetes import operator as core

ROOT = pathlib.Path(__file__).resolve().parents[2]
T0 = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC)


def e2e() -> list[resources.Resource]:
    return [o for name in ("init-trench-a.yaml", "init-trench-b.yaml")
            for o in resources.load_file(ROOT / "examples" / "e2e" / name) if o.KIND in resources.MERIDIO_KINDS]


def test_each_trench_gets_the_configmap_meridio_render_gives_and_every_object_is_ready() -> None:
    objs = e2e()
    want = core.desired(objs, "red")
    assert set(want.configmaps) == {"trench-a", "trench-b"}
    for trench, cm in want.configmaps.items():
        assert cm["metadata"] == {"name": f"meridio-configuration-{trench}", "namespace": "red",
                                  "labels": {"app.kubernetes.io/managed-by": "meridio-operator", "trench": trench}}
        assert cm["data"] == configmap.render(objs, trench, "red")
    assert {k for k, c in want.conditions.items() if c.status == "True"} == {(o.KIND, o.name) for o in objs}


def test_objects_of_another_namespace_or_without_their_trench_are_not_configured() -> None:
    objs = e2e()
    stray = resources.parse_object({"apiVersion": resources.API_VERSION, "kind": "Vip",
                                    "metadata": {"name": "v9", "namespace": "red", "labels": {"trench": "trench-z"}},
                                    "spec": {"address": "203.0.113.9/32"}})
    want = core.desired([*objs, stray], "red")
    assert want.conditions[("Vip", "v9")] == core.Condition("False", "TrenchNotFound",
                                                            "no Trench 'trench-z' in namespace 'red'")
    assert core.desired(objs, "blue") == core.Desired({}, {})


def test_the_configmap_is_owned_by_its_trench() -> None:
    cm = core.desired(e2e(), "red").configmaps["trench-a"]
    owned = core.configmap_object(cm, "uid-1", "trench-a")
    assert owned["metadata"]["ownerReferences"] == [{
        "apiVersion": "meridio.nordix.org/v1", "kind": "Trench", "name": "trench-a", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True}]
    assert "ownerReferences" not in cm["metadata"]  # the desired object itself is not changed


def test_the_ready_condition_changes_only_when_something_changed() -> None:
    ready = core.Condition("True", "Configured", "in ConfigMap meridio-configuration-trench-a")
    first = core.condition_patch([], ready, 1, T0)
    assert first == [{"type": "Ready", "status": "True", "reason": "Configured", "observedGeneration": 1,
                      "message": "in ConfigMap meridio-configuration-trench-a",
                      "lastTransitionTime": "2026-12-07T10:00:00Z"}]
    assert core.condition_patch(first, ready, 1, T0 + datetime.timedelta(hours=1)) is None
    regen = core.condition_patch(first, ready, 2, T0 + datetime.timedelta(hours=1))
    assert regen is not None and regen[0]["lastTransitionTime"] == "2026-12-07T10:00:00Z"  # same status
    failed = core.condition_patch(first, core.Condition("False", "TrenchNotFound", "x"), 2,
                                  T0 + datetime.timedelta(hours=1))
    assert failed is not None and failed[0]["lastTransitionTime"] == "2026-12-07T11:00:00Z"
    other = [{"type": "Other", "status": "True"}, *first]
    kept = core.condition_patch(other, core.Condition("False", "TrenchNotFound", "x"), 2, T0)
    assert kept is not None and kept[0] == {"type": "Other", "status": "True"}


def test_ready_reports_the_workloads_and_says_which_are_not_ready() -> None:
    configured = core.Condition("True", "Configured", "in ConfigMap meridio-configuration-trench-a")
    sts = lambda ready: {"spec": {"replicas": 1}, "status": {"readyReplicas": ready}}  # noqa: E731
    assert core.readiness("Trench", "trench-a", configured, {}) == core.Condition(
        "False", "WorkloadsMissing", "not created yet: nsp-trench-a, ipam-trench-a")
    waiting = core.readiness("Trench", "trench-a", configured, {("statefulsets", "nsp-trench-a"): sts(1),
                                                                 ("statefulsets", "ipam-trench-a"): sts(0)})
    assert waiting == core.Condition("False", "WorkloadsNotReady", "ipam-trench-a: 0/1 ready")
    ready = core.readiness("Trench", "trench-a", configured, {("statefulsets", "nsp-trench-a"): sts(1),
                                                               ("statefulsets", "ipam-trench-a"): sts(1)})
    assert ready == core.Condition("True", "Ready", configured.message)
    fe = {("deployments", "stateless-lb-frontend-a1"): {"spec": {"replicas": 2}, "status": {"availableReplicas": 1}}}
    assert core.readiness("Attractor", "a1", configured, fe).message == "stateless-lb-frontend-a1: 1/2 ready"
    ds = {("daemonsets", "proxy-c1"): {"spec": {}, "status": {"numberReady": 0, "desiredNumberScheduled": 0}}}
    assert core.readiness("Conduit", "c1", configured, ds).message == "proxy-c1: 0/0 ready"  # no node to run on
    assert core.readiness("Stream", "s", configured, {}) is configured  # no workloads of its own
    broken = core.Condition("False", "TrenchNotFound", "x")
    assert core.readiness("Attractor", "a1", broken, fe) is broken
