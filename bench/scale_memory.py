"""Memory of the local runtime with a target deployment at its stream's max-targets (100), and how long
the scale takes.

Brings up the built-in default environment under its own name (``benchscale``), measures the PSS
(``/proc/<pid>/smaps_rollup``) of every process of the environment (the supervised components, the
daemon, BIRD) in total and per component, scales ``target-a`` from 4 to 100 (stream-a-i has no
max-targets, so 100), waits until the TAPAs of all 100 report stream-a-i OPEN (registered at the NSP),
measures again, scales back to 4, measures a third time and takes the environment down. Prints a
table and writes ``bench/results/scale_memory.json``.

    sudo .venv/bin/python bench/scale_memory.py [--replicas 100]
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

from runtime_env import ROOT, default_environment, environment_pids, mem_available_kb, memory, meridio

ENV_NAME, PREFIX = "benchscale", "mbsc"
DEPLOYMENT, STREAM, BASELINE = "target-a", "stream-a-i", 4
_COMPONENTS = ("nsp", "ipam", "lb", "frontend", "proxy", "tapa")


def component_of(pid: int) -> str:
    """What a process is: a ``meridio run <component>``, the example target, BIRD or the runtime daemon."""
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    if "run" in words and words.index("run") + 1 < len(words) and words[words.index("run") + 1] in _COMPONENTS:
        return words[words.index("run") + 1]
    if "example-target" in words:
        return "example-target"
    if words and os.path.basename(words[0]) == "bird":
        return "bird"
    return "runtime/other"


def measure() -> dict[str, Any]:
    pids = environment_pids(ENV_NAME, PREFIX)
    total = memory(pids)
    groups: dict[str, set[int]] = collections.defaultdict(set)
    for pid in pids:
        groups[component_of(pid)].add(pid)
    total["by_component"] = {name: memory(p) for name, p in sorted(groups.items())}
    return total


def open_targets() -> int:
    status = json.loads(meridio(ENV_NAME, "status", "-o", "json"))
    return sum(1 for pod, streams in status["targets"].items() if pod.startswith(DEPLOYMENT + "-")
               and any(s["stream"] == STREAM and s["status"] == "OPEN" for s in streams or ()))


def scale_to(n: int, timeout: float = 900) -> float:
    started = time.monotonic()
    meridio(ENV_NAME, "scale", f"deployment/{DEPLOYMENT}", "--replicas", str(n))
    while open_targets() != n:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{n} targets not open after {timeout:.0f} s")
        time.sleep(2)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=100)
    args = parser.parse_args()
    env_file = default_environment(ENV_NAME, PREFIX)
    meridio(ENV_NAME, "down")
    meridio(ENV_NAME, "up", "-f", str(env_file), "--timeout", "300")
    try:
        time.sleep(5)  # let the processes finish their start-up allocations
        free0 = mem_available_kb()
        before = measure()
        up_s = scale_to(args.replicas)
        time.sleep(5)
        at = measure()
        at["memavailable_drop_mib"] = round((free0 - mem_available_kb()) / 1024, 1)
        down_s = scale_to(BASELINE)
        time.sleep(5)
        after = measure()
    finally:
        meridio(ENV_NAME, "down")
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
              "machine": f"{platform.node()} {os.cpu_count()} vCPU",
              "environment": f"default; {DEPLOYMENT} {BASELINE} -> {args.replicas} -> {BASELINE}",
              "scale_up_s": round(up_s, 1), "scale_down_s": round(down_s, 1),
              "before": before, "at_max": at, "after": after}
    out = ROOT / "bench" / "results" / "scale_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scale {BASELINE} -> {args.replicas}: all OPEN after {up_s:.1f} s; back to {BASELINE}: {down_s:.1f} s\n")
    print(f"| component | PSS MiB at {BASELINE} (procs) | PSS MiB at {args.replicas} (procs) | "
          f"PSS MiB back at {BASELINE} |\n|---|---|---|---|")
    names = sorted(set(before["by_component"]) | set(at["by_component"]))
    for name in names:
        b, a, c = (m["by_component"].get(name, {"pss_mib": 0, "processes": 0}) for m in (before, at, after))
        print(f"| {name} | {b['pss_mib']} ({b['processes']}) | {a['pss_mib']} ({a['processes']}) | {c['pss_mib']} |")
    print(f"| **all** | {before['pss_mib']} ({before['processes']}) | {at['pss_mib']} ({at['processes']}) | "
          f"{after['pss_mib']} |")
    print(f"\nMemAvailable drop at {args.replicas}: {at['memavailable_drop_mib']} MiB; saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
