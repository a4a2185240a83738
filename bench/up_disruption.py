"""How much a disruption hurts established traffic, measured with ``meridio traffic --duration`` (ctraffic-like).

For each disruption: 50 long-lived TCP connections to trench-a's vip-a-1 (IPv4, port 4000), 10 messages
per second each, for 16 s; the disruption 5 s in; then the environment is brought back to ready. The
table gives what the connections saw: failed connects, resets (reset or closed by the other end) and
timeouts (no echo within 5 s; given up), lost messages, and how many connections each target ended with.

Disruptions: nothing (baseline); SIGKILL of one LB process (restarted by the supervisor; the kernel
forwarding state stays); SIGKILL of one frontend (its BIRD goes with it: the gateway moves the flows to
the other FE replica, whose LB has the same Maglev table); SIGKILL of the runtime daemon (then ``up``);
scale-in of target-a from 4 to 3 (the connections of the removed target are reset, the others stay).

    sudo .venv/bin/python bench/up_disruption.py
"""
from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import pathlib
import platform
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import runtime_env
from runtime_env import ROOT

ENV_NAME, PREFIX = "bench", "mbench"
VIP, PORT, DURATION, AT = "203.0.113.1", 4000, 16, 5.0


def meridio(*args: str, timeout: float = 600) -> str:
    return runtime_env.meridio(ENV_NAME, *args, timeout=timeout)


def pid_of(process: str) -> int:
    status = json.loads(meridio("status", "-o", "json"))
    return next(int(p["pid"]) for p in status["processes"] if p["name"] == process)


def kill(process: str) -> Callable[[], None]:
    return lambda: os.kill(pid_of(process), signal.SIGKILL)


def kill_daemon() -> None:
    pid = runtime_env.runtime_daemon(ENV_NAME)
    assert pid is not None, "the runtime daemon is not running"
    os.kill(pid, signal.SIGKILL)


def scale(n: int) -> Callable[[], None]:
    return lambda: meridio("scale", "deployment/target-a", "--replicas", str(n))


def measure(name: str, disrupt: Callable[[], None] | None, env_file: pathlib.Path) -> dict[str, Any]:
    args = ["traffic", "--trench", "trench-a", "--vip", VIP, "--port", str(PORT), "--nconn", "50",
            "--duration", str(DURATION), "--rate", "10", "--timeout", "5", "-o", "json"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(meridio, *args)
        time.sleep(AT)
        if disrupt is not None:
            disrupt()
        report = json.loads(run.result())
    meridio("up", "-f", str(env_file), "--timeout", "120")
    row = {"disruption": name, **{k: report[k] for k in ("failed_connects", "resets", "timeouts", "reconnects", "sent",
                                                          "lost_messages", "moved")},
           "hosts": report["hosts"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    env_file = runtime_env.default_environment(ENV_NAME, PREFIX)
    meridio("up", "-f", str(env_file), "--timeout", "240")
    try:
        rows = [measure("none (baseline)", None, env_file),
                measure("SIGKILL lb of stateless-lb-frontend-attractor-a-1-0",
                        kill("stateless-lb-frontend-attractor-a-1-0/lb"), env_file),
                measure("SIGKILL frontend of stateless-lb-frontend-attractor-a-1-0 (and its BIRD)",
                        kill("stateless-lb-frontend-attractor-a-1-0/frontend"), env_file),
                measure("SIGKILL of the runtime daemon, then meridio up", kill_daemon, env_file),
                measure("scale-in target-a 4 -> 3", scale(3), env_file)]
        meridio("scale", "deployment/target-a", "--replicas", "4")
    finally:
        meridio("down")
    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.node()} {os.cpu_count()} vCPU",
              "traffic": f"50 TCP connections x 10 msg/s for {DURATION}s, disruption at {AT}s", "rows": rows}
    out = ROOT / "bench" / "results" / "up_disruption.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| disruption | failed connects | resets | timeouts | lost messages / sent | connections per target |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['disruption']} | {r['failed_connects']} | {r['resets']} | {r['timeouts']} | "
              f"{r['lost_messages']} / {r['sent']} | "
              f"{r['hosts']} |")
    print(f"\nsaved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
