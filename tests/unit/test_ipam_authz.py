"""Who may allocate and release in an IPAM (:mod:`meridio.ipam.authz`): each rule of the module docstring
with a case that passes it and one that breaks it, the order they are checked in, and the error class
and status code of a refusal (both the shared mapping and the IPAM servicer's).

Pure: identities and requests are values; nothing is faked.
"""
from __future__ import annotations

import grpc
import pytest

from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.common.retry import PermanentError
from meridio.ipam import authz
from meridio.ipam import servicer as servicermod
from meridio.ipam.registry import ChildRequest
from tests.unit.tls_samples import C, ident

POLICY = authz.Policy(trench="trench-a")
PROXY = ident(C.PROXY, "proxy-conduit-a-1-node-1", node="node-1")
FRONTEND = ident(C.FRONTEND, "attractor-a-0", node="node-1")


def child(node: str = "node-1", *, trench: str = "trench-a", family: int = 0) -> ChildRequest:
    return ChildRequest(name="proxy-conduit-a-1-node-1", trench=trench, conduit="conduit-a-1", node=node,
                        family=family)


def refusal(caller: idm.Identity, request: ChildRequest | None = None) -> str:
    with pytest.raises(grpcutil.PermissionDenied) as caught:
        POLICY.check(caller, request or child())
    return str(caught.value)


# ------------------------------------------------------------------ rule 1: the component

@pytest.mark.parametrize("caller", [PROXY, FRONTEND], ids=["proxy", "frontend"])
@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_rule1_a_proxy_or_frontend_of_this_trench_and_node_may_allocate(caller: idm.Identity, family: int) -> None:
    POLICY.check(caller, child(family=family))


def test_allocators_are_exactly_proxy_and_frontend() -> None:
    assert authz.ALLOCATORS == frozenset({C.PROXY, C.FRONTEND})


@pytest.mark.parametrize("component", [C.NSP, C.IPAM, C.LB, C.TAPA, C.RUNTIME],
                         ids=["nsp", "ipam", "lb", "tapa", "runtime"])
def test_rule1_other_components_may_not_allocate(component: idm.Component) -> None:
    caller = ident(component, "pod-0", node="node-1")  # this trench, this node: only the component is wrong
    assert refusal(caller) == f"{component.value} pod-0 may not allocate addresses (only a proxy or a frontend)"


# ------------------------------------------------------------------ rule 2: the trench

def test_rule2_a_caller_of_another_trench_is_refused() -> None:
    proxy_b = ident(C.PROXY, "proxy-b", trench="trench-b", node="node-1")
    assert refusal(proxy_b) == "proxy proxy-b belongs to trench 'trench-b', this IPAM serves 'trench-a'"


def test_rule2_a_caller_naming_no_trench_is_refused() -> None:
    proxy = ident(C.PROXY, "proxy-x", trench=None, node="node-1")
    assert refusal(proxy) == "proxy proxy-x belongs to trench '', this IPAM serves 'trench-a'"


def test_rule2_the_same_caller_passes_the_ipam_of_its_own_trench() -> None:
    proxy_b = ident(C.PROXY, "proxy-b", trench="trench-b", node="node-1")
    authz.Policy(trench="trench-b").check(proxy_b, child(trench="trench-b"))


# ------------------------------------------------------------------ rule 3: the node

def test_rule3_a_caller_naming_no_node_is_refused() -> None:
    proxy = ident(C.PROXY, "proxy-x", node=None)
    assert refusal(proxy) == "proxy proxy-x: its identity names no node"


@pytest.mark.parametrize("node", ["node-2", "node-10", "Node-1", ""], ids=["other", "prefix-match", "case", "empty"])
def test_rule3_a_request_for_another_node_is_refused(node: str) -> None:
    assert refusal(PROXY, child(node)) == \
        f"child.subnet.node {node!r}: proxy proxy-conduit-a-1-node-1 runs on node 'node-1'"


def test_rule3_a_frontend_is_bound_to_its_node_too() -> None:
    assert "runs on node 'node-1'" in refusal(FRONTEND, child("node-2"))


def test_rule3_a_refusal_quotes_at_most_64_characters_of_the_requested_node() -> None:
    message = refusal(PROXY, child("n" * 300))
    assert "n" * 64 in message and "n" * 65 not in message


# ------------------------------------------------------------------ order, class, code

def test_the_component_is_checked_before_the_trench_and_node() -> None:
    nsp_b = ident(C.NSP, "nsp-b", trench="trench-b")
    assert "may not allocate addresses" in refusal(nsp_b, child("node-9"))


def test_the_trench_is_checked_before_the_node() -> None:
    proxy_b = ident(C.PROXY, "proxy-b", trench="trench-b", node=None)
    assert "belongs to trench 'trench-b'" in refusal(proxy_b)


def test_a_missing_node_is_reported_before_the_requested_node() -> None:
    proxy = ident(C.PROXY, "proxy-x", node=None)
    assert refusal(proxy, child("node-2")).endswith("its identity names no node")


def test_a_refusal_is_a_permanent_permission_denied() -> None:
    with pytest.raises(grpcutil.PermissionDenied) as caught:
        POLICY.check(ident(C.LB, "lb-0", node="node-1"), child())
    assert isinstance(caught.value, PermanentError)
    assert grpcutil.status_for(caught.value) is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("exc", "code"), [
    (grpcutil.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (grpcutil.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
], ids=["permission-denied", "unauthenticated"])
def test_the_ipam_servicer_answers_the_identity_codes(exc: Exception, code: grpc.StatusCode) -> None:
    assert servicermod.status_for(exc) is code
