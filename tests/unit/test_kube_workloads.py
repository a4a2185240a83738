"""The operator's workload objects (offline): golden renders of the e2e configuration, valid Kubernetes
1.37 objects, the very containers the local runtime runs (one model), Meridio's placement and
disruption rules, the Multus annotation and the resource-template annotation."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import kubernetes_validate
import pytest

from meridio.api import resources, yamlio
from meridio.runtime import reconcile as rc
from meridio.runtime import workloads as wl
from meridio.runtime.kubernetes import workloads
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pods
from meridio.runtime.local.layout import Naming, StateLayout

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "unit" / "golden" / "kube" / "e2e-workloads.yaml"


def e2e() -> list[resources.Resource]:
    return [o for n in ("init-trench-a.yaml", "init-trench-b.yaml")
            for o in resources.load_file(ROOT / "examples" / "e2e" / n)]


def rendered(objs: list[resources.Resource] | None = None) -> list[dict[str, Any]]:
    objs = objs if objs is not None else e2e()
    return workloads.objects(objs, "red", {(o.KIND, o.name): f"uid-{o.KIND.lower()}-{o.name}" for o in objs})


def test_the_e2e_configuration_renders_the_golden_objects() -> None:
    text = yamlio.dump_all(rendered())
    if os.environ.get("MERIDIO_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, "MERIDIO_UPDATE_GOLDEN=1 pytest tests/unit/test_kube_workloads.py rewrites it"


def test_every_workload_object_is_a_valid_kubernetes_1_37_object() -> None:
    out = rendered()
    assert sorted({o["kind"] for o in out}) == ["DaemonSet", "Deployment", "PodDisruptionBudget", "Service",
                                                "StatefulSet"]
    for obj in out:
        kubernetes_validate.validate(obj, "1.37", strict=True)


def test_the_containers_are_the_ones_the_local_runtime_runs() -> None:
    """Same components, same meridio arguments, same environment variables; only the Site's values
    (paths, the pod's name and node) differ."""
    env = envmod.load_default()
    local = pods.PodBuilder(env, StateLayout(pathlib.Path("/tmp/s")), Naming(env.prefix))
    want = rc.desired(e2e(), nodes=env.nodes, deployments=[rc.TargetDeployment("target-a", 1, ())])
    for w in {w.kind: w for w in want.workloads}.values():
        mine, theirs = wl.containers(w, workloads.KubeSite()), wl.containers(w, local)
        assert [c.name for c in mine] == [c.name for c in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert [k for k, _ in a.env] == [k for k, _ in b.env], (w.kind, a.name)
            assert a.args[:2] == b.args[:2] and a.capabilities == b.capabilities
    by_name = {o["metadata"]["name"]: o for o in rendered()}
    fe = by_name["stateless-lb-frontend-attractor-a-1"]["spec"]["template"]["spec"]
    lb_env = {e["name"]: e for e in fe["containers"][0]["env"]}
    assert lb_env["NSM_HOSTNAME"]["value"] == "$(MERIDIO_POD_NAME)"  # the downward API's pod name
    assert lb_env["MERIDIO_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    names = [e["name"] for e in fe["containers"][0]["env"]]
    assert names.index("MERIDIO_POD_NAME") < names.index("NSM_HOSTNAME")  # defined before it is referred to


def test_meridios_placement_and_disruption_rules() -> None:
    by_name = {o["metadata"]["name"]: o for o in rendered()}
    fe = by_name["stateless-lb-frontend-attractor-a-1"]
    assert fe["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}}
    (term,) = fe["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {"labelSelector": {"matchLabels": {"app": "stateless-lb-frontend-attractor-a-1"}},
                    "topologyKey": "kubernetes.io/hostname"}
    assert by_name["pdb-attractor-a-1"]["spec"]["minAvailable"] == "75%"
    init = fe["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:2] == ["sysctl", "-w"] and "net.ipv4.ip_forward=1" in init["command"]
    nsp = by_name["nsp-trench-a"]
    assert nsp["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert by_name["nsp-service-trench-a"]["spec"]["ports"][0]["port"] == wl.NSP_PORT
    for obj in by_name.values():
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["controller"] is True and owner["uid"].startswith("uid-")


@pytest.mark.parametrize("template", [None, "large"])
def test_a_network_attachment_gets_the_multus_annotation_and_the_resource_template_is_copied(
        template: str | None) -> None:
    objs = e2e()
    attractor = next(o for o in objs if isinstance(o, resources.Attractor) and o.name == "attractor-a-1")
    spec = resources.to_dict(attractor)
    spec["spec"]["interface"] = {"name": "ext0", "type": "network-attachment", "ipv4-prefix": "169.254.100.0/24",
                                 "ipv6-prefix": "2001:db8:100::/64",
                                 "network-attachments": [{"name": "vlan-100", "namespace": "red"}]}
    if template:
        spec["metadata"]["annotations"] = {"resource-template": template}
    changed = [resources.parse_object(spec) if o is attractor else o for o in objs]
    fe = {o["metadata"]["name"]: o for o in rendered(changed)}["stateless-lb-frontend-attractor-a-1"]
    networks = json.loads(fe["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert networks == [{"name": "vlan-100", "namespace": "red", "interface": "ext0"}]
    assert fe["metadata"].get("annotations", {}).get("resource-template") == template


def test_the_example_target_runs_the_local_target_pods_containers_with_the_tapa_sidecar() -> None:
    dep = workloads.example_target("red", replicas=2)
    kubernetes_validate.validate(dep, "1.37", strict=True)
    app, tapa = dep["spec"]["template"]["spec"]["containers"]
    assert app["args"][:3] == ["example-target", "--name", "$(MERIDIO_POD_NAME)"]
    env = {e["name"]: e.get("value") for e in tapa["env"]}
    assert env["MERIDIO_NAME"] == "$(MERIDIO_POD_NAME)" and env["MERIDIO_NODE"] == "$(MERIDIO_POD_NODE)"
    assert env["MERIDIO_NSP_SERVICE"] == "nsp-service-{trench}:7778"
    assert env["MERIDIO_PROXY_SOCKET"] == "/var/lib/meridio/proxies/{trench}/{conduit}/{node}/link.sock"
    local = pods.PodBuilder(envmod.load_default(), StateLayout(pathlib.Path("/tmp/s")), Naming("x"))
    w = rc.Workload("t-0", rc.Kind.TARGET, "node-1")
    assert [k for k, _ in wl.containers(w, local)[1].env] == [k for k in env if not k.startswith("MERIDIO_POD_")]


def test_an_attractor_scaled_to_zero_keeps_its_deployment_at_zero_replicas() -> None:
    """Its Deployment is scaled, not deleted (and comes back when scaled up): the template does not come
    from the pods the local runtime would run, of which there are none."""
    objs = e2e()
    attractor = next(o for o in objs if isinstance(o, resources.Attractor) and o.name == "attractor-a-2")
    doc = resources.to_dict(attractor)
    doc["spec"]["replicas"] = 0
    changed = [resources.parse_object(doc) if o is attractor else o for o in objs]
    by_name = {o["metadata"]["name"]: o for o in rendered(changed)}
    fe = by_name["stateless-lb-frontend-attractor-a-2"]
    assert fe["spec"]["replicas"] == 0
    assert fe["spec"]["template"] == {o["metadata"]["name"]: o for o in rendered()}[
        "stateless-lb-frontend-attractor-a-2"]["spec"]["template"]
