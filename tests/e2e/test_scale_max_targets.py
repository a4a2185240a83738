"""``meridio scale`` up to the stream's max-targets (100 by default), on one node: every replica registered,
in the LB's Maglev table and answering traffic; one more is refused naming the limit; then back to one.

Its own one-node environment (``mini_environment``: one FE+LB, one proxy, deployment ``tm`` opening
stream-m, which has no max-targets and so 100): 100 target pods share one proxy, one IPAM node subnet
and one stream. The memory of this is measured by ``bench/scale_memory.py``, not here.
"""
from __future__ import annotations

import json
import os

from meridio.runtime.local import environment as envmod
from meridio.runtime.reconcile import fe_pod_name
from tests.conftest import wait_for
from tests.e2e.framework import E2E, MINI_VIP, meridio, mini_environment

NAME = os.environ.get("MERIDIO_E2E_ENV", "e2e") + "max"
PREFIX = os.environ.get("MERIDIO_E2E_PREFIX", "me2e")[:4] + "x"
MAX_TARGETS = 100


def _registered(e2e: E2E) -> set[str]:
    """Pods whose TAPA reports stream-m OPEN (registered at the NSP with an identifier)."""
    targets = e2e.status()["targets"]
    return {pod for pod, streams in targets.items()
            if any(s["stream"] == "stream-m" and s["status"] == "OPEN" for s in streams or ())}


def test_a_deployment_scales_to_its_streams_max_targets_and_every_replica_gets_traffic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = mini_environment(tmp_path, NAME, PREFIX)
    e2e = E2E(envmod.load(env_file))
    e2e.env_file = env_file
    lb = fe_pod_name("attractor-m", 0)
    try:
        up = meridio("up", "-f", str(env_file), "--timeout", "180")
        assert up.returncode == 0, up.stderr
        refused = e2e.meridio("scale", "deployment/tm", "--replicas", str(MAX_TARGETS + 1), check=False)
        assert refused.returncode != 0
        assert "--replicas: 101 must be between 0 and 100 (the max-targets of stream stream-m" in refused.stderr
        assert [p["name"] for p in e2e.status()["pods"] if p["name"].startswith("tm-")] == ["tm-0"]

        e2e.scale("tm", MAX_TARGETS)
        wait_for(lambda: len(_registered(e2e)) == MAX_TARGETS, 900, 5, message="100 targets registered")
        e2e.wait_lb("attractor-m", "stream-m", MAX_TARGETS, timeout=300)
        assert e2e.lb_targets(lb, "stream-m") == MAX_TARGETS
        # 2000 connections: every one of the 100 targets gets some (400 would leave ~2 without any)
        wait_for(lambda: len(e2e.traffic("trench-m", MINI_VIP, 4000, nconn=300, timeout=5)["hosts"]) > 90, 120, 1,
                 message="traffic reaching the new targets")
        report = e2e.traffic("trench-m", MINI_VIP, 4000, nconn=2000, timeout=120)
        assert report["lost"] == 0, report["errors"]
        assert set(report["hosts"]) == {f"tm-{i}" for i in range(MAX_TARGETS)}

        e2e.scale("tm", 1)
        e2e.wait_lb("attractor-m", "stream-m", 1, timeout=300)
        report = e2e.traffic("trench-m", MINI_VIP, 4000)
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0, json.dumps(report)[:500]
    finally:
        down = meridio("down", "--env", NAME, timeout=600)
    assert down.returncode == 0, down.stderr
