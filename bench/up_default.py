"""Time and memory of ``meridio up`` for the default environment (goal: <= 30 s on 2 cores), and of ``down``.

Runs (as root) ``meridio down`` (for a clean start), then ``ROUNDS`` times: ``meridio up`` (timed until
the daemon reports ready: processes up, BGP sessions, VIPs announced by every FE, streams open), the
memory of everything the environment runs, ``meridio down`` (timed). Memory is the sum over the
environment's processes (the supervised components, the daemon, BIRD) of PSS (``smaps_rollup``: shared
pages counted proportionally) and of RSS, plus the drop of ``MemAvailable``. Prints a table and writes
``bench/results/up_default.json``. Uses its own environment name (``bench``) so it never touches a
user's ``default`` environment.

    sudo .venv/bin/python bench/up_default.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

from runtime_env import ROOT, default_environment, environment_pids, mem_available_kb, memory, meridio

ENV_NAME, PREFIX = "bench", "mbench"


def timed(*args: str) -> float:
    started = time.monotonic()
    meridio(ENV_NAME, *args)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env_file = default_environment(ENV_NAME, PREFIX)
    meridio(ENV_NAME, "down")
    rounds = []
    for i in range(args.rounds):
        before = mem_available_kb()
        up_s = timed("up", "-f", str(env_file), "--timeout", "300")
        time.sleep(2)  # let the processes finish their start-up allocations
        mem = memory(environment_pids(ENV_NAME, PREFIX))
        mem["memavailable_drop_mib"] = round((before - mem_available_kb()) / 1024, 1)
        down_s = timed("down")
        rounds.append({"up_s": round(up_s, 1), "down_s": round(down_s, 1), **mem})
        print(f"round {i + 1}: up {up_s:.1f} s, down {down_s:.1f} s, {mem}", flush=True)
    summary = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.node()} {os.cpu_count()} vCPU",
              "environment": "default (2 trenches, 3 attractors x 2 FE+LB, 6 proxies, 8 targets, 4 BIRD routers)",
              "rounds": rounds, "median": summary}
    out = ROOT / "bench" / "results" / "up_default.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| measure | median of {len(rounds)} |\n|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v} |")
    print(f"\nsaved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
