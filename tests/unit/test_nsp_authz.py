"""Who may change which target in the NSP's registry (:mod:`meridio.nsp.authz`): each rule of the module
docstring with a case that passes it and one that breaks it, the order they are checked in, and the
error class and status code of a refusal.

Pure: identities and targets are values; nothing is faked.
"""
from __future__ import annotations

import grpc
import pytest

from meridio.api import model
from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.common.retry import PermanentError
from meridio.nsp import authz
from tests.unit.tls_samples import C, ident

POLICY = authz.Policy(trench="trench-a")
T = model.TargetType
ACTIONS = list(authz.Action)

TAPA = ident(C.TAPA, "target-a-1", trench=None, node="node-1")
LB = ident(C.LB, "lb-conduit-a-1-0", node="node-1")
FE = ident(C.FRONTEND, "attractor-a-0", node="node-1")


def target(type: model.TargetType = T.DEFAULT, trench: str | None = "trench-a", ip: str = "172.16.0.2/32"
           ) -> model.Target:
    stream = model.Stream("stream-a-i", model.Conduit("conduit-a-1", model.Trench(trench) if trench else None))
    return model.Target.make(ips=[ip], context={"identifier": "1"}, type=type, stream=stream)


def refusal(caller: idm.Identity, action: authz.Action, t: model.Target, owner: str | None = None) -> str:
    with pytest.raises(grpcutil.PermissionDenied) as caught:
        POLICY.check(caller, action, t, owner=owner)
    return str(caught.value)


# ------------------------------------------------------------------ the permitted cases

@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
@pytest.mark.parametrize(("caller", "type"), [(TAPA, T.DEFAULT), (LB, T.LOADBALANCER), (FE, T.FRONTEND)],
                         ids=["tapa-default", "lb-loadbalancer", "frontend-frontend"])
def test_each_component_may_change_its_own_type_of_target(caller: idm.Identity, type: model.TargetType,
                                                          action: authz.Action) -> None:
    POLICY.check(caller, action, target(type), owner=None)


def test_may_change_names_exactly_three_components() -> None:
    assert authz.MAY_CHANGE == {C.TAPA: T.DEFAULT, C.LB: T.LOADBALANCER, C.FRONTEND: T.FRONTEND}


# ------------------------------------------------------------------ rule 1: the caller's trench

def test_rule1_a_caller_of_this_trench_passes() -> None:
    POLICY.check(LB, authz.Action.REGISTER, target(T.LOADBALANCER), owner=None)


def test_rule1_a_tapa_names_no_trench_and_may_register_in_any_nsp() -> None:
    authz.Policy(trench="trench-b").check(TAPA, authz.Action.REGISTER, target(trench="trench-b"), owner=None)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule1_a_caller_of_another_trench_is_refused(action: authz.Action) -> None:
    other = ident(C.LB, "lb-conduit-b-1-0", trench="trench-b")
    assert refusal(other, action, target(T.LOADBALANCER)) == \
        "lb lb-conduit-b-1-0 belongs to trench 'trench-b', this NSP serves 'trench-a'"


def test_rule1_a_tapa_identity_naming_another_trench_is_refused() -> None:
    tapa_b = ident(C.TAPA, "target-b-1", trench="trench-b")
    assert "belongs to trench 'trench-b'" in refusal(tapa_b, authz.Action.REGISTER, target())


# ------------------------------------------------------------------ rule 2: the target's trench

@pytest.mark.parametrize("t", [
    model.Target.make(ips=["172.16.0.2/32"]),
    model.Target.make(ips=["172.16.0.2/32"], stream=model.Stream("stream-a-i")),
    target(trench=None),
], ids=["no-stream", "stream-without-conduit", "conduit-without-trench"])
def test_rule2_a_target_naming_no_trench_passes(t: model.Target) -> None:
    POLICY.check(TAPA, authz.Action.UNREGISTER, t, owner=None)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule2_a_target_of_another_trench_is_refused(action: authz.Action) -> None:
    assert refusal(TAPA, action, target(trench="trench-b")) == \
        "target.stream.conduit.trench 'trench-b': this NSP serves 'trench-a'"


# ------------------------------------------------------------------ rule 3: the component

@pytest.mark.parametrize("component", [C.NSP, C.IPAM, C.PROXY, C.RUNTIME], ids=["nsp", "ipam", "proxy", "runtime"])
@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule3_a_component_that_changes_no_targets_is_refused(component: idm.Component, action: authz.Action) -> None:
    caller = ident(component, "pod-0", trench=None if component is C.RUNTIME else "trench-a")
    for type in T:
        assert refusal(caller, action, target(type)) == f"{component.value} pod-0 may not {action.value} targets"


MISMATCHES = [(TAPA, T.FRONTEND), (TAPA, T.LOADBALANCER), (LB, T.DEFAULT), (LB, T.FRONTEND),
              (FE, T.DEFAULT), (FE, T.LOADBALANCER)]


@pytest.mark.parametrize(("caller", "type"), MISMATCHES,
                         ids=["tapa-frontend", "tapa-lb", "lb-default", "lb-frontend", "fe-default", "fe-lb"])
@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule3_a_component_may_not_change_another_type_of_target(caller: idm.Identity, type: model.TargetType,
                                                                 action: authz.Action) -> None:
    allowed = authz.MAY_CHANGE[caller.component]
    assert refusal(caller, action, target(type)) == \
        f"{caller.component.value} {caller.pod} may {action.value} only {allowed.name} targets, not {type.name}"


# ------------------------------------------------------------------ rule 4: ownership

@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule4_the_owner_may_change_its_target(action: authz.Action) -> None:
    POLICY.check(TAPA, action, target(), owner=TAPA.uri)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule4_a_target_without_owner_is_open_to_a_permitted_caller(action: authz.Action) -> None:
    POLICY.check(TAPA, action, target(), owner=None)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.value for a in ACTIONS])
def test_rule4_another_identity_may_not_change_the_target(action: authz.Action) -> None:
    owner = ident(C.TAPA, "target-a-2", trench=None, node="node-2").uri
    assert refusal(TAPA, action, target(), owner=owner) == \
        f"tapa target-a-1 may not {action.value} a target registered by another identity"


@pytest.mark.parametrize("owner", [
    ident(C.TAPA, "target-a-1", trench=None, node="node-2"),
    ident(C.TAPA, "target-a-1", trench=None, node="node-1", cluster="other"),
    idm.Identity(cluster="e2e", component=C.TAPA, pod="target-a-1", node="node-1", trust_domain="example.org"),
], ids=["other-node", "other-cluster", "other-trust-domain"])
def test_rule4_ownership_is_the_whole_identity_not_the_pod_name(owner: idm.Identity) -> None:
    assert owner.pod == TAPA.pod
    assert "registered by another identity" in refusal(TAPA, authz.Action.REGISTER, target(), owner=owner.uri)


# ------------------------------------------------------------------ order, class, code

def test_the_callers_trench_is_checked_before_its_component() -> None:
    proxy_b = ident(C.PROXY, "proxy-b", trench="trench-b", node="node-1")
    assert "belongs to trench 'trench-b'" in refusal(proxy_b, authz.Action.REGISTER, target())


def test_the_targets_trench_is_checked_before_the_component() -> None:
    proxy = ident(C.PROXY, "proxy-a", node="node-1")
    assert refusal(proxy, authz.Action.REGISTER, target(trench="trench-b")).startswith("target.stream.conduit.trench")


def test_the_type_is_checked_before_the_owner() -> None:
    other = ident(C.TAPA, "target-a-2", trench=None).uri
    assert "only DEFAULT targets" in refusal(TAPA, authz.Action.REGISTER, target(T.FRONTEND), owner=other)


def test_a_refusal_is_a_permanent_permission_denied() -> None:
    with pytest.raises(grpcutil.PermissionDenied) as caught:
        POLICY.check(ident(C.NSP, "nsp"), authz.Action.REGISTER, target(), owner=None)
    assert isinstance(caught.value, PermanentError)
    assert not isinstance(caught.value, grpcutil.Unauthenticated)
    assert grpcutil.status_for(caught.value) is grpc.StatusCode.PERMISSION_DENIED


def test_a_refusal_quotes_at_most_64_characters_of_a_target_trench() -> None:
    message = refusal(TAPA, authz.Action.REGISTER, target(trench="t" * 200))
    assert "t" * 64 in message and "t" * 65 not in message
