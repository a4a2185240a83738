"""The pure reconcile core: resources → workloads, and the plan that changes only what must change."""
from __future__ import annotations

from meridio.api import resources, validation
from meridio.runtime import reconcile as rc

NODES = ("node-1", "node-2")

TRENCH_A = """
apiVersion: meridio.nordix.org/v1
kind: Trench
metadata: {name: trench-a}
spec: {ip-family: dualstack}
---
apiVersion: meridio.nordix.org/v1
kind: Vip
metadata: {name: vip-a-1, labels: {trench: trench-a}}
spec: {address: 203.0.113.1/32}
---
apiVersion: meridio.nordix.org/v1
kind: Gateway
metadata: {name: gateway-a-1, labels: {trench: trench-a}}
spec:
  address: 169.254.100.150
  bgp: {local-asn: 8103, remote-asn: 4248829953, hold-time: 24s, local-port: 10179, remote-port: 10179,
        bfd: {switch: true, min-tx: 300ms, min-rx: 300ms, multiplier: 5}}
---
apiVersion: meridio.nordix.org/v1
kind: Conduit
metadata: {name: conduit-a-1, labels: {trench: trench-a}}
spec: {type: stateless-lb}
---
apiVersion: meridio.nordix.org/v1
kind: Stream
metadata: {name: stream-a-i, labels: {trench: trench-a}}
spec: {conduit: conduit-a-1}
---
apiVersion: meridio.nordix.org/v1
kind: Flow
metadata: {name: flow-a-z-tcp, labels: {trench: trench-a}}
spec: {stream: stream-a-i, vips: [vip-a-1], source-subnets: [0.0.0.0/0], source-ports: [any],
       destination-ports: ["4000"], protocols: [tcp], priority: 1}
---
apiVersion: meridio.nordix.org/v1
kind: Attractor
metadata: {name: attractor-a-1, labels: {trench: trench-a}}
spec:
  replicas: 2
  composites: [conduit-a-1]
  gateways: [gateway-a-1]
  vips: [vip-a-1]
  interface:
    name: ext-vlan0
    type: network-attachment
    network-attachments: [{name: trench-a-attr-a-1-nad, namespace: red}]
"""

TRENCH_B = TRENCH_A.replace("trench-a", "trench-b").replace("-a-", "-b-")
TARGETS = (rc.TargetDeployment("target-a", 4, ("trench-a/conduit-a-1/stream-a-i",)),)


def _objs(*texts: str) -> list[resources.Resource]:
    return [o for t in texts for o in resources.loads(t)]


def _hashes(want: rc.Desired) -> dict[str, str]:
    return {w.name: w.spec_hash for w in want.workloads if not w.pending}


def test_a_trench_gets_an_nsp_an_ipam_and_its_configmap() -> None:
    want = rc.desired(_objs(TRENCH_A), nodes=NODES)
    kinds = {w.name: w.kind for w in want.workloads}
    assert kinds["nsp-trench-a"] is rc.Kind.NSP and kinds["ipam-trench-a"] is rc.Kind.IPAM
    assert set(want.configmaps) == {"trench-a"}
    assert "flow-a-z-tcp" in want.configmaps["trench-a"]["flows"]
    assert want.by_name()["ipam-trench-a"].param("ip-family") == "dualstack"


def test_attractor_replicas_get_one_fe_lb_pod_per_node_with_its_interface_and_conduit() -> None:
    want = rc.desired(_objs(TRENCH_A), nodes=NODES).by_name()
    fe0, fe1 = want["stateless-lb-frontend-attractor-a-1-0"], want["stateless-lb-frontend-attractor-a-1-1"]
    assert (fe0.node, fe1.node) == NODES
    assert fe0.param("conduit") == "conduit-a-1" and fe0.param("interface") == "ext-vlan0"
    assert fe0.param("network-attachment") == "red/trench-a-attr-a-1-nad"
    assert fe0.spec_hash != fe1.spec_hash  # the node differs


def test_replicas_beyond_the_node_count_stay_pending_and_are_never_started() -> None:
    objs = _objs(TRENCH_A.replace("replicas: 2", "replicas: 3"))
    want = rc.desired(objs, nodes=NODES)
    third = want.by_name()["stateless-lb-frontend-attractor-a-1-2"]
    assert third.pending.startswith("0/2 nodes are available")
    assert "stateless-lb-frontend-attractor-a-1-2" not in {w.name for w in rc.plan({}, want).start}


def test_every_conduit_gets_a_proxy_on_every_node() -> None:
    want = rc.desired(_objs(TRENCH_A), nodes=NODES).by_name()
    assert {n for n, w in want.items() if w.kind is rc.Kind.PROXY} == {
        "proxy-conduit-a-1-node-1", "proxy-conduit-a-1-node-2"}
    assert want["proxy-conduit-a-1-node-2"].node == "node-2"


def test_target_replicas_are_named_by_index_and_spread_round_robin() -> None:
    want = rc.desired(_objs(TRENCH_A), nodes=NODES, deployments=TARGETS).by_name()
    assert [want[f"target-a-{i}"].node for i in range(4)] == ["node-1", "node-2", "node-1", "node-2"]
    assert want["target-a-0"].param("streams") == "trench-a/conduit-a-1/stream-a-i"


def test_a_deployment_may_have_as_many_replicas_as_its_streams_max_targets_100_by_default() -> None:
    assert rc.replica_limit(_objs(TRENCH_A), TARGETS[0]) == (
        100, "the max-targets of stream stream-a-i, the largest of the streams deployment target-a opens")


def test_the_replica_limit_is_the_largest_max_targets_of_the_deployments_streams() -> None:
    extra = TRENCH_A.replace("stream-a-i", "stream-a-ii").replace("{conduit: conduit-a-1}",
                                                                 "{conduit: conduit-a-1, max-targets: 250}")
    dep = rc.TargetDeployment("target-a", 4, ("trench-a/conduit-a-1/stream-a-i", "trench-a/conduit-a-1/stream-a-ii"))
    assert rc.replica_limit(_objs(TRENCH_A, extra.split("---")[4]), dep)[0] == 250
    other_trench = rc.TargetDeployment("target-a", 4, ("trench-b/conduit-a-1/stream-a-ii",))
    assert rc.replica_limit(_objs(TRENCH_A, extra.split("---")[4]), other_trench)[0] == rc.MERIDIO_MAX_TARGETS


def test_a_deployment_whose_streams_do_not_exist_is_limited_by_meridios_largest_max_targets() -> None:
    limit, why = rc.replica_limit([], TARGETS[0])
    assert limit == 10000 and "opens no stream that exists" in why


def test_changing_a_flow_rewrites_the_configmap_and_restarts_nothing() -> None:
    before = rc.desired(_objs(TRENCH_A), nodes=NODES, deployments=TARGETS)
    after = rc.desired(_objs(TRENCH_A.replace('["4000"]', '["4000", "4001"]').replace("priority: 1", "priority: 3")),
                       nodes=NODES, deployments=TARGETS)
    assert after.configmaps["trench-a"]["flows"] != before.configmaps["trench-a"]["flows"]
    assert rc.plan(_hashes(before), after).empty


def test_adding_a_vip_and_a_gateway_restarts_nothing() -> None:
    extra = """
apiVersion: meridio.nordix.org/v1
kind: Vip
metadata: {name: vip-a-2, labels: {trench: trench-a}}
spec: {address: 203.0.113.150/32}
"""
    before = rc.desired(_objs(TRENCH_A), nodes=NODES)
    after = rc.desired(_objs(TRENCH_A.replace("vips: [vip-a-1]\n  interface", "vips: [vip-a-1, vip-a-2]\n  interface"),
                             extra), nodes=NODES)
    assert "vip-a-2" in after.configmaps["trench-a"]["attractors"]
    assert rc.plan(_hashes(before), after).empty


def test_scaling_an_attractor_starts_only_the_new_replica() -> None:
    before = rc.desired(_objs(TRENCH_A.replace("replicas: 2", "replicas: 1")), nodes=NODES)
    after = rc.desired(_objs(TRENCH_A), nodes=NODES)
    step = rc.plan(_hashes(before), after)
    assert [w.name for w in step.start] == ["stateless-lb-frontend-attractor-a-1-1"] and step.stop == ()


def test_scaling_a_deployment_down_stops_only_the_highest_index() -> None:
    before = rc.desired([], nodes=NODES, deployments=TARGETS)
    after = rc.desired([], nodes=NODES, deployments=(rc.TargetDeployment("target-a", 3, TARGETS[0].streams),))
    step = rc.plan(_hashes(before), after)
    assert step.stop == ("target-a-3",) and step.start == ()


def test_a_second_trench_starts_only_its_own_pods() -> None:
    before = rc.desired(_objs(TRENCH_A), nodes=NODES, deployments=TARGETS)
    after = rc.desired(_objs(TRENCH_A, TRENCH_B), nodes=NODES, deployments=TARGETS)
    step = rc.plan(_hashes(before), after)
    assert step.stop == ()
    assert {w.trench for w in step.start} == {"trench-b"}
    assert set(after.configmaps) == {"trench-a", "trench-b"}


def test_deleting_a_trench_cascades_to_every_pod_of_that_trench_only() -> None:
    objs = _objs(TRENCH_A, TRENCH_B)
    before = rc.desired(objs, nodes=NODES, deployments=TARGETS)
    removed = validation.plan_delete(objs, [("Trench", "default", "trench-a")])
    remaining = [o for o in objs if o not in removed]
    after = rc.desired(remaining, nodes=NODES, deployments=TARGETS)
    step = rc.plan(_hashes(before), after)
    stopped = {before.by_name()[n] for n in step.stop}
    assert {w.trench for w in stopped} == {"trench-a"}
    assert {w.kind for w in stopped} == {rc.Kind.NSP, rc.Kind.IPAM, rc.Kind.FRONTEND_LB, rc.Kind.PROXY}
    assert "target-a-0" in step.keep and set(after.configmaps) == {"trench-b"}


def test_a_workload_whose_spec_changed_is_stopped_and_started_again() -> None:
    before = rc.desired(_objs(TRENCH_A), nodes=NODES)
    after = rc.desired(_objs(TRENCH_A.replace("name: ext-vlan0", "name: ext-other")), nodes=NODES)
    step = rc.plan(_hashes(before), after)
    assert set(step.stop) == {w.name for w in step.start} == {
        "stateless-lb-frontend-attractor-a-1-0", "stateless-lb-frontend-attractor-a-1-1"}


def test_the_same_trench_name_in_two_namespaces_is_reported_not_run_twice() -> None:
    objs = _objs(TRENCH_A, "apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: trench-a, namespace: red}\n")
    want = rc.desired(objs, nodes=NODES)
    assert [w.name for w in want.workloads].count("nsp-trench-a") == 1
    assert any("trench names are unique" in p for p in want.problems)
