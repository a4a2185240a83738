"""The admission webhook's core: AdmissionReviews in, THE validator's verdict out, in the API server's
shape (422 Invalid with causes), for create, update (immutability) and cross-object rules."""
from __future__ import annotations

from typing import Any

import pytest

from meridio.api import resources
from meridio.runtime.kubernetes import admission

NS = "red"


def obj(kind: str, name: str, spec: dict[str, Any], trench: str | None = "trench-a") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": NS, "uid": "u-1", "resourceVersion": "7",
                          "creationTimestamp": "2026-12-07T10:00:00Z", "managedFields": [{"manager": "kubectl"}]}
    if trench is not None and kind != "Trench":
        md["labels"] = {"trench": trench}
    return {"apiVersion": resources.API_VERSION, "kind": kind, "metadata": md, "spec": spec}


def request(operation: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"uid": "3f2a-9", "operation": operation, "namespace": NS,
                           "kind": {"group": resources.GROUP, "version": "v1", "kind": (new or old or {})["kind"]}}
    if new is not None:
        req["object"] = new
    if old is not None:
        req["oldObject"] = old
    return {"apiVersion": admission.ADMISSION_VERSION, "kind": "AdmissionReview", "request": req}


TRENCH = obj("Trench", "trench-a", {"ip-family": "dualstack"})
CONDUIT = obj("Conduit", "conduit-a-1", {})
EXISTING = [resources.parse_object(TRENCH), resources.parse_object(CONDUIT)]


def test_a_valid_create_is_allowed_with_the_requests_uid() -> None:
    out = admission.review(request("CREATE", obj("Stream", "s", {"conduit": "conduit-a-1"})), EXISTING)
    assert out == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "3f2a-9", "allowed": True}}


def attractor(name: str, ifname: str, vlan: int) -> dict[str, Any]:
    return obj("Attractor", name, {"composites": ["conduit-a-1"], "interface": {
        "name": ifname, "ipv4-prefix": "169.254.100.0/24", "ipv6-prefix": "100:100::/64",
        "nsm-vlan": {"base-interface": "eth0", "vlan-id": vlan}}})


ATTRACTOR = attractor("attractor-a-1", "ext-vlan0", 100)


def test_a_cross_object_problem_is_refused_as_the_api_server_would_refuse_an_invalid_object() -> None:
    """A second attractor taking a conduit the first has: Meridio's webhook rule, not a schema rule."""
    second = attractor("attractor-a-2", "ext-vlan1", 101)
    assert admission.review(request("CREATE", second), EXISTING)["response"]["allowed"] is True  # alone: fine
    out = admission.review(request("CREATE", second), [*EXISTING, resources.parse_object(ATTRACTOR)])
    response = out["response"]
    assert response["allowed"] is False and response["uid"] == "3f2a-9"
    status = response["status"]
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == ('Attractor.meridio.nordix.org "attractor-a-2" is invalid: spec.composites: '
                                 'Invalid value: ["conduit-a-1"]: a conduit cannot be shared between 2 '
                                 'attractors in this version')
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.composites"]


def test_objects_of_another_namespace_are_not_the_world_of_the_check() -> None:
    elsewhere = resources.parse_object({**ATTRACTOR, "metadata": {**ATTRACTOR["metadata"], "namespace": "blue"}})
    second = attractor("attractor-a-2", "ext-vlan1", 101)
    assert admission.review(request("CREATE", second), [*EXISTING, elsewhere])["response"]["allowed"] is True


def test_a_create_without_a_trench_that_exists_is_refused_naming_the_label() -> None:
    out = admission.review(request("CREATE", obj("Conduit", "c", {}, trench="trench-z")), EXISTING)
    causes = out["response"]["status"]["details"]["causes"]
    assert out["response"]["allowed"] is False and any("trench" in c["field"] for c in causes), causes


def test_an_update_that_changes_an_immutable_field_is_refused_and_the_same_spec_is_allowed() -> None:
    old = obj("Trench", "trench-a", {"ip-family": "dualstack"})
    new = obj("Trench", "trench-a", {"ip-family": "ipv4"})
    refused = admission.review(request("UPDATE", new, old), EXISTING)
    assert refused["response"]["allowed"] is False
    assert [c["field"] for c in refused["response"]["status"]["details"]["causes"]] == ["spec.ip-family"]
    assert admission.review(request("UPDATE", old, old), EXISTING)["response"]["allowed"] is True


def test_several_problems_are_all_causes_and_joined_in_brackets_in_the_message() -> None:
    bad = obj("Gateway", "g", {"address": "not-an-ip", "protocol": "static",
                              "static": {"bfd": {"switch": True, "min-tx": "fast"}}})
    status = admission.review(request("CREATE", bad), EXISTING)["response"]["status"]
    assert len(status["details"]["causes"]) >= 2
    assert status["message"].startswith('Gateway.meridio.nordix.org "g" is invalid: [')


def test_delete_is_allowed_as_meridio_has_no_delete_rule() -> None:
    assert admission.review(request("DELETE", None, TRENCH), EXISTING)["response"]["allowed"] is True


@pytest.mark.parametrize(("body", "why"), [
    ({}, "not an admission.k8s.io/v1 AdmissionReview"),
    ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request: Required value"),
    ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x" * 200}},
     "request.uid: Required value"),
    ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
      "request": {"uid": "u", "operation": "UPDATE", "object": TRENCH}}, "request.oldObject: Required value"),
])
def test_a_malformed_review_is_refused_with_400_and_says_what_is_wrong(body: dict[str, Any], why: str) -> None:
    response = admission.review(body, EXISTING)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert response["status"]["message"].startswith(f"malformed admission review: {why}")
