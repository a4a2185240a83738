"""The CRDs (rendered from the project's one schema) in a real kube-apiserver: installed, served in
v1 and v1alpha1, Meridio's e2e resources accepted and stored as ``meridio`` reads them, bad resources
refused by the API server with the same field and rule as ``meridio validate`` says, Meridio's columns.

Real: kube-apiserver v1.37.2 on kine (see tests/kube/conftest.py). No webhook yet: what is checked here
is the schema level, which the API server enforces itself.
"""
from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from meridio.api import problems, resources
from meridio.runtime.kubernetes import crds
from tests.support.kube import ControlPlane, KubeError

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "e2e").glob("*.yaml"))


def _path(namespace: str, kind: str, version: str = "v1", name: str = "") -> str:
    base = f"/apis/{resources.GROUP}/{version}/namespaces/{namespace}/{crds.PLURALS[kind]}"
    return f"{base}/{name}" if name else base


def _meridio_docs() -> list[dict[str, Any]]:
    docs = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in resources.MERIDIO_KINDS:
                docs.append(doc)
    return docs


def test_every_meridio_crd_is_established_with_v1_stored_and_v1alpha1_served_deprecated(installed: ControlPlane) -> None:
    assert installed.admin is not None
    groups = installed.admin.get(f"/apis/{resources.GROUP}")
    assert [v["version"] for v in groups["versions"]] == ["v1", "v1alpha1"]
    assert groups["preferredVersion"]["version"] == "v1"
    v1 = {r["name"]: r for r in installed.admin.get(f"/apis/{resources.GROUP}/v1")["resources"]}
    assert {n for n in v1 if "/" not in n} == set(crds.PLURALS.values())
    assert {f"{p}/status" for p in crds.PLURALS.values()} <= set(v1)  # the status subresource
    assert all(v1[p]["namespaced"] for p in crds.PLURALS.values())


def test_meridios_e2e_resources_are_accepted_and_stored_as_meridio_reads_them(installed: ControlPlane,
                                                                             namespace: str) -> None:
    """The API server applies the CRD defaults; what it stores is the stored form ``meridio`` writes."""
    assert installed.admin is not None
    seen = 0
    for doc in _meridio_docs():
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        try:
            created = installed.admin.create(_path(namespace, doc["kind"]), doc)
        except KubeError as exc:
            if exc.status == 409:  # the same object in two example files (a later step of one scenario)
                continue
            raise
        expected = resources.to_dict(resources.parse_object(doc))
        assert created["spec"] == expected["spec"], (doc["kind"], doc["metadata"]["name"])
        seen += 1
    assert seen >= 15


def test_a_v1alpha1_resource_is_stored_and_read_back_as_v1(installed: ControlPlane, namespace: str) -> None:
    assert installed.admin is not None
    body = {"apiVersion": f"{resources.GROUP}/v1alpha1", "kind": "Trench", "metadata": {"name": "trench-x"},
            "spec": {"ip-family": "ipv4"}}
    installed.admin.create(_path(namespace, "Trench", "v1alpha1"), body)
    got = installed.admin.get(_path(namespace, "Trench", "v1", "trench-x"))
    assert got["apiVersion"] == resources.API_VERSION and got["spec"] == {"ip-family": "ipv4"}


# (kind, spec change, the field the API server and `meridio validate` both name)
BAD = [
    ("Stream", {"max-targets": "lots"}, "spec.max-targets"),
    ("Stream", {"max-targets": -1}, "spec.max-targets"),
    ("Trench", {"ip-family": "ipv5"}, "spec.ip-family"),
    ("Gateway", {"address": "192.0.2.1", "protocol": "ospf"}, "spec.protocol"),
    ("Gateway", {"protocol": "bgp"}, "spec.address"),
    ("Gateway", {"address": "192.0.2.1", "bgp": {"remote-port": 0}}, "spec.bgp.remote-port"),
    ("Flow", {"vips": ["v"], "protocols": ["icmp"], "priority": 1}, "spec.protocols[0]"),
    ("Flow", {"vips": ["v"], "protocols": ["tcp"]}, "spec.priority"),
    ("Attractor", {"composites": ["c"], "interface": {"name": "a-very-long-interface-name"}}, "spec.interface.name"),
    ("Attractor", {"composites": ["c"], "interface": {"name": "ext", "type": "macvlan"}}, "spec.interface.type"),
    ("Conduit", {"destination-port-nats": [{"port": 70000, "target-port": 80, "vips": ["v"], "protocol": "tcp"}]},
     "spec.destination-port-nats[0].port"),
]


@pytest.mark.parametrize(("kind", "spec", "field"), BAD, ids=[f"{k}-{f}" for k, _, f in BAD])
def test_a_bad_resource_is_refused_by_the_api_server_naming_the_field_meridio_names(
        installed: ControlPlane, namespace: str, kind: str, spec: dict[str, Any], field: str) -> None:
    assert installed.admin is not None
    body = {"apiVersion": resources.API_VERSION, "kind": kind,
            "metadata": {"name": "bad", "labels": {"trench": "trench-a"}}, "spec": spec}
    with pytest.raises(problems.ProblemsError) as ours:
        resources.parse_object(body)
    assert any(p.field == field for p in ours.value.problems), ours.value.problems
    with pytest.raises(KubeError) as theirs:
        installed.admin.create(_path(namespace, kind), body)
    assert theirs.value.status == 422
    causes = {c.get("field"): c.get("message") for c in theirs.value.body.get("details", {}).get("causes", [])}
    mine = {p.field: p.message for p in ours.value.problems}
    if "must be of type" in mine[field]:
        # Kubernetes 1.37 names the JSON type of the bad value where ours (and older servers) quote it:
        # 'Invalid value: "string": ... must be of type integer: "string"'
        assert mine[field].split(": ", 2)[2] in causes[field], (causes[field], mine[field])
    else:
        assert causes[field] == mine[field]  # the same words, not just the same field
    with pytest.raises(KubeError) as gone:
        installed.admin.get(_path(namespace, kind, name="bad"))
    assert gone.value.status == 404  # nothing was stored


def test_an_unknown_field_is_refused_under_strict_field_validation_as_meridio_refuses_it(
        installed: ControlPlane, namespace: str) -> None:
    assert installed.admin is not None
    body = {"apiVersion": resources.API_VERSION, "kind": "Vip", "metadata": {"name": "v", "labels": {"trench": "t"}},
            "spec": {"address": "203.0.113.1/32", "adress": "x"}}
    with pytest.raises(problems.ProblemsError) as ours:
        resources.parse_object(body)
    assert [p.field for p in ours.value.problems] == ["spec.adress"]
    with pytest.raises(KubeError) as theirs:
        installed.admin.request("POST", _path(namespace, "Vip") + "?fieldValidation=Strict", body)
    assert theirs.value.status == 400 and theirs.value.message.endswith("strict decoding error: unknown field \"spec.adress\"")


def test_kubectl_get_shows_meridios_columns(installed: ControlPlane, namespace: str) -> None:
    assert installed.admin is not None
    installed.admin.create(_path(namespace, "Stream"), {
        "apiVersion": resources.API_VERSION, "kind": "Stream",
        "metadata": {"name": "stream-a-i", "labels": {"trench": "trench-a"}},
        "spec": {"conduit": "conduit-a-1", "max-targets": 100}})
    table = installed.admin.get(_path(namespace, "Stream"),
                                accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready", "Conduit", "Trench",
                                                                "Max-Targets", "Age"]
    assert table["rows"][0]["cells"][:5] == ["stream-a-i", None, "conduit-a-1", "trench-a", 100]
