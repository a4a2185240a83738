"""Fixtures of the network-namespace tier (root needed).

Real: the kernel (namespaces, veths, bridges, nftables, rules, routes) and the component processes.
``conduit_env`` (from :mod:`tests.netns.conduit_support`) starts NSP, IPAM, LB pods, proxies and targets
as real processes; its only fakes, named as such there, are FRONTEND/LOADBALANCER announcements where
a test does not run the component that would make them.
``bpffs`` mounts a private bpffs for the eBPF fast path's pins and unmounts it (pins and all) at teardown.
"""
import dataclasses
import pathlib
import tempfile
from collections.abc import Iterator

import pytest

from tests.netns.conduit_support import conduit_env  # noqa: F401  (fixture)
from tests.support.frontend import FeEnv


@pytest.fixture
def fe_env(netns, procs, tmp_path: pathlib.Path) -> Iterator[FeEnv]:  # type: ignore[no-untyped-def]
    """A gateway BIRD and frontend namespaces on one segment (:class:`FeEnv`), closed at teardown."""
    e = FeEnv(netns, procs, tmp_path)
    try:
        yield e
    finally:
        e.close()


@dataclasses.dataclass
class Bpffs:
    path: pathlib.Path


@pytest.fixture
def bpffs() -> Iterator[Bpffs]:
    """A bpffs of this test's own (not under /sys/fs/bpf: ``ip netns exec`` hides that one)."""
    from meridio.kernel import bpf

    path = pathlib.Path(tempfile.mkdtemp(prefix="meridio-bpffs-"))
    bpf.mount_bpffs(path)
    try:
        yield Bpffs(path)
    finally:
        bpf.unmount_bpffs(path)
