"""The kube tier: a real kube-apiserver (+ kine, + kube-controller-manager) for the whole session.

The servers are built from the Go module proxy on first use and cached (``scripts/kube-test-servers``);
a failed build fails the tier with the build's own error, it is never skipped. Each test works in a
Kubernetes namespace of its own.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from meridio.runtime.kubernetes import crds
from tests.support.kube import ControlPlane, control_plane, wait_until


@pytest.fixture(scope="session")
def kube() -> Iterator[ControlPlane]:
    with control_plane() as cp:
        yield cp


@pytest.fixture
def namespace(kube: ControlPlane) -> str:
    return kube.namespace()


@pytest.fixture(scope="session")
def installed(kube: ControlPlane) -> ControlPlane:
    """The control plane with Meridio's CRDs installed and established."""
    assert kube.admin is not None
    for crd in crds.crds():
        kube.admin.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for crd in crds.crds():
        name = crd["metadata"]["name"]
        wait_until(lambda n=name: _established(kube, n), 30, message=f"{name} established")
    return kube


def _established(kube: ControlPlane, name: str) -> bool:
    assert kube.admin is not None
    got = kube.admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return any(c["type"] == "Established" and c["status"] == "True"
               for c in got.get("status", {}).get("conditions", []))
