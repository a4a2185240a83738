"""The runtime itself (not a Meridio scenario): a crashed runtime daemon loses nothing and disturbs no
traffic, and ``meridio up`` repairs a half-built environment."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time

from tests.conftest import wait_for
from tests.e2e.framework import E2E, VIP1, daemon_pid, wait_baseline


def test_a_killed_runtime_daemon_is_replaced_by_up_without_restarting_anything_or_losing_traffic(e2e: E2E) -> None:
    e2e.expect_traffic("trench-a", VIP1[4], 4000, 4)
    before = e2e.pids()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(e2e.traffic, "trench-a", VIP1[4], 4000, nconn=50, duration=12)
        time.sleep(3)
        os.kill(daemon_pid(e2e.env.name), signal.SIGKILL)
        e2e.wait_ready()  # a new daemon adopts what runs
        report = run.result()
    after = e2e.pids()
    assert after == before, "no process may be restarted"
    assert len(report["hosts"]) == 4 and report["lost"] == 0
    assert (report["failed_connects"], report["resets"], report["timeouts"], report["lost_messages"]) == (0, 0, 0, 0), \
        report


def test_up_repairs_a_half_built_environment(e2e: E2E) -> None:
    """No daemon, trench-b's traffic generator gone, a target pod's namespace gone under its processes.

    (A gateway router made again is the next test: it also takes the frontends' connectivity away.)
    """
    os.kill(daemon_pid(e2e.env.name), signal.SIGKILL)
    for ns in (e2e.naming.tg_ns("gw-b1"), e2e.naming.pod_ns("target-b-3")):
        subprocess.run(["ip", "netns", "del", ns], check=True)
    gone = e2e.meridio("status", check=False)
    assert gone.returncode == 1 and "is not up" in gone.stderr
    e2e.wait_ready()
    wait_baseline(e2e)
    e2e.expect_traffic("trench-b", VIP1[4], 4000, 4)
    e2e.expect_traffic("trench-b", VIP1[6], 4000, 4)


def test_a_gateway_router_made_again_while_the_daemon_runs_is_repaired_by_up(e2e: E2E) -> None:
    """The router's namespace deleted under its BIRD (which would live on, unreachable, in an orphan copy):
    ``up`` makes the namespace again and restarts BIRD inside it; the frontends reconnect and trench-b's
    traffic flows again at once (the proxies forget the re-created LB links' old MACs)."""
    e2e.expect_traffic("trench-b", VIP1[4], 4000, 4)
    bird = e2e.pids()["router-gw-b1/bird"]
    subprocess.run(["ip", "netns", "del", e2e.naming.router_ns("gw-b1")], check=True)
    e2e.wait_ready()
    assert e2e.pids()["router-gw-b1/bird"] not in (None, bird), "BIRD must run in the new namespace"
    e2e.expect_traffic("trench-b", VIP1[4], 4000, 4, settle=10)
    e2e.expect_traffic("trench-b", VIP1[6], 4000, 4, settle=10)
    e2e.expect_traffic("trench-a", VIP1[4], 4000, 4, settle=10)


def test_a_crashed_tapa_is_restarted_and_its_pod_opens_its_streams_again(e2e: E2E) -> None:
    pid = e2e.pids()["target-a-0/tapa"]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: e2e.pids().get("target-a-0/tapa") not in (None, pid), 30, 0.2, message="the TAPA restarted")
    wait_baseline(e2e)
    e2e.expect_traffic("trench-a", VIP1[4], 4000, 4)

