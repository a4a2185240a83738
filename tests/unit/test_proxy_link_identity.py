"""The proxy's link service with mutual TLS: only the TAPA of the pod a link is for, on this node."""
from __future__ import annotations

import grpc
import pytest

from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.proxy import service
from meridio.proxy.targets import PermissionDenied


def tapa(pod: str, node: str | None = "node-1") -> idm.Identity:
    return idm.Identity(cluster="c", component=idm.Component.TAPA, pod=pod, node=node)


def test_the_tapa_of_the_pod_on_this_node_may_use_its_link() -> None:
    service.check_caller(tapa("target-a-0"), "target-a-0", "node-1")


def test_a_tapa_whose_identity_names_no_node_is_checked_on_its_pod_only() -> None:
    service.check_caller(tapa("target-a-0", node=None), "target-a-0", "node-1")


def test_another_pods_tapa_is_refused_naming_the_pod_in_its_certificate() -> None:
    with pytest.raises(PermissionDenied, match=r"target_id 'target-a-0': the caller's certificate names pod "
                                               r"'target-a-1'"):
        service.check_caller(tapa("target-a-1"), "target-a-0", "node-1")


def test_the_same_pod_name_on_another_node_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="runs on node 'node-2', this proxy serves node 'node-1'"):
        service.check_caller(tapa("target-a-0", node="node-2"), "target-a-0", "node-1")


@pytest.mark.parametrize("component", [c for c in idm.Component if c is not idm.Component.TAPA])
def test_no_other_component_may_use_the_link_service(component: idm.Component) -> None:
    who = idm.Identity(cluster="c", component=component, pod="target-a-0",
                       trench="trench-a" if component in (idm.Component.NSP, idm.Component.IPAM) else None)
    with pytest.raises(PermissionDenied, match="only a TAPA"):
        service.check_caller(who, "target-a-0", "node-1")


def test_refusals_map_to_permission_denied_and_no_identity_to_unauthenticated() -> None:
    assert service.status_for(PermissionDenied("x")) is grpc.StatusCode.PERMISSION_DENIED
    assert service.status_for(grpcutil.PermissionDenied("x")) is grpc.StatusCode.PERMISSION_DENIED
    assert service.status_for(grpcutil.Unauthenticated("x")) is grpc.StatusCode.UNAUTHENTICATED
