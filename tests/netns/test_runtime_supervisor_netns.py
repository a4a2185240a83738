"""The supervisor and namespaces made again: a process must not stay behind in a deleted one.

Real: namespaces (``ip netns``), child processes started with ``ip netns exec``.
"""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

from meridio.common import retry
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import supervisor as supmod
from tests.conftest import eventually

pytestmark = pytest.mark.netns


def _comm(pid: int | None) -> str:
    """The process name: ``ip`` until ``ip netns exec`` has entered the namespace and exec'd the child."""
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


async def test_a_process_whose_namespace_was_made_again_is_restarted_inside_the_new_one(
        netns, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    ns = netns("sup")
    restarted: list[str] = []
    sup = supmod.Supervisor(backoff=lambda: retry.Backoff(initial=0.05, cap=0.2),
                            on_restart=lambda spec: restarted.append(spec.name))
    spec = supmod.ProcessSpec(pod="pod", component="c", argv=(sys.executable, "-c", "import time; time.sleep(60)"),
                              log_path=tmp_path / "c.log", netns=ns)
    sup.ensure(spec)
    try:
        old = await sup.wait_started(spec.name)
        await eventually(lambda: _comm(old) not in ("", "ip"))
        assert sup.restart_misplaced() == []  # in its own namespace: left alone
        netnsmod.remove(ns)  # the process keeps the deleted namespace alive, unreachable
        netnsmod.create(ns)
        assert _netns_inode(old) != os.stat(os.path.join(netnsmod.NETNS_DIR, ns)).st_ino
        assert sup.restart_misplaced() == [spec.name]
        await eventually(lambda: sup.status()[0].pid not in (None, old) and _comm(sup.status()[0].pid) not in ("", "ip"))
        new = sup.status()[0].pid
        assert new is not None
        assert _netns_inode(new) == os.stat(os.path.join(netnsmod.NETNS_DIR, ns)).st_ino
        assert restarted == [spec.name]
    finally:
        await sup.stop_all()
