#!/usr/bin/env python3
"""Frontend timings, BIRD against BIRD in network namespaces (run as root from the repository root):

    .venv/bin/python bench/fe_timings.py [--runs 5] [--flips 10]

1. **Failure detection**: for several BFD timer sets (and BGP without BFD, hold time 3 s, as a reference),
   freeze the FE's BIRD (SIGSTOP) or drop its packets (nft), and measure the time until the *gateway's
   kernel* deletes the VIP route (the ``ip -ts monitor route`` timestamp in the gateway namespace minus the
   trigger time). Goal: within 1.2 x (multiplier x interval).
2. **Announce / withdraw**: the time from the LB reporting its first target (resp. losing its last one) to
   the VIP route appearing (resp. disappearing) in the gateway's kernel. Goal: within 500 ms.

The LB is the frontend's test double (``LbAvailabilityDouble``); everything else is real: the FE daemon,
both BIRDs, the NSP, the kernel. All processes share the VM's 2 vCPUs with whatever else runs. Prints a
table and writes ``bench/results/fe_timings.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meridio.bird.birdconf import Bfd  # noqa: E402
from meridio.kernel import netns as netnsmod  # noqa: E402
from tests.conftest import NetnsFactory, Procs  # noqa: E402
from tests.support import frontend as testing  # noqa: E402
from tests.support.frontend import FeEnv, eventually, gateway_item  # noqa: E402

VIP4, VIP6 = "203.0.113.10", "2001:db8:f::10"
VIPS = {"vip-v4": f"{VIP4}/32", "vip-v6": f"{VIP6}/128"}
DROP = """table inet fe_bench_drop {
    chain in { type filter hook input priority -300; iifname "ext0" drop; }
    chain out { type filter hook output priority -300; oifname "ext0" drop; }
}"""
_LINE = re.compile(r"^\[(?P<ts>[^\]]+)\] (?P<deleted>Deleted )?(?P<dst>\S+) ")


class RouteMonitor:
    """``ip -ts monitor route`` in a namespace; events are read back from its log file."""

    def __init__(self, procs: Procs, ns: str) -> None:
        self.procs = procs
        self.proc = procs.start(["stdbuf", "-oL", "ip", "-ts", "monitor", "route"], ns=ns, name="route-monitor")
        time.sleep(0.3)

    def events(self) -> list[tuple[float, bool, str]]:
        out = []
        for line in self.procs.output(self.proc).splitlines():
            m = _LINE.match(line)
            if m:
                ts = datetime.datetime.fromisoformat(m.group("ts")).timestamp()
                out.append((ts, bool(m.group("deleted")), m.group("dst")))
        return out

    def wait(self, dst: str, deleted: bool, after: float, timeout: float = 30.0) -> float:
        """Seconds from ``after`` to the first matching event after it."""
        def find() -> float | None:
            for ts, is_del, d in self.events():
                if d == dst and is_del == deleted and ts >= after:
                    return ts - after
            return None
        return float(eventually(find, timeout, 0.01, f"{'deletion' if deleted else 'addition'} of {dst}"))


def environment(workdir: pathlib.Path, bfd: Bfd | None) -> tuple[FeEnv, NetnsFactory, Procs, RouteMonitor]:
    ns, procs = NetnsFactory(), Procs(workdir)
    env = FeEnv(ns, procs, workdir)
    hold = 3 if bfd is None else 30  # with BFD, a long hold time shows that BFD did the detecting
    env.start_gateway(testing.gateway_config(env.segment, bfd=bfd, hold_time_s=hold))
    triple = None if bfd is None else (bfd.min_rx_ms, bfd.min_tx_ms, bfd.multiplier)
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4, bfd=triple, hold_time=hold),
        gateway_item("gw-v6", env.segment.gw_v6, bfd=triple, hold_time=hold)]))
    monitor = RouteMonitor(procs, env.segment.gw_ns)
    env.start_frontend(0, extra=["--log-level", "INFO", "--log-bird", "false"])
    return env, ns, procs, monitor


def settle(env: FeEnv, bfd: Bfd | None) -> None:
    eventually(lambda: env.gw_nexthops(VIP4) and env.gw_nexthops(VIP6), 60, message="VIPs announced")
    if bfd is not None:
        eventually(lambda: len(env.gw_bfd_up()) == 2, 30, message="both BFD sessions Up")
    time.sleep(1.5)


def trigger_stop(env: FeEnv) -> tuple[float, Callable[[], None]]:
    pid = env.fe_bird_pid(0)
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP)
    return t0, lambda: os.kill(pid, signal.SIGCONT)


def trigger_drop(env: FeEnv) -> tuple[float, Callable[[], None]]:
    fe = env.segment.fe_nss[0]
    t0 = time.time()
    netnsmod.run(fe, ["nft", "-f", "-"], input=DROP)
    return t0, lambda: netnsmod.run(fe, ["nft", "delete", "table", "inet", "fe_bench_drop"]) and None


def detection(workdir: pathlib.Path, bfd: Bfd | None, trigger: str, runs: int) -> dict[str, Any]:
    env, ns, procs, monitor = environment(workdir, bfd)
    values: list[float] = []
    try:
        env.lbs[0].set_available(True)
        for _ in range(runs):
            settle(env, bfd)
            t0, undo = (trigger_stop if trigger == "SIGSTOP" else trigger_drop)(env)
            try:
                values.append(monitor.wait(VIP4, True, t0, 15))
                values.append(monitor.wait(VIP6, True, t0, 15))
            finally:
                undo()
    finally:
        env.close()
        procs.cleanup()
        ns.cleanup()
    configured = (bfd.multiplier * max(bfd.min_tx_ms, bfd.min_rx_ms) / 1000) if bfd else 3.0
    return {"bfd": None if bfd is None else [bfd.min_rx_ms, bfd.min_tx_ms, bfd.multiplier], "trigger": trigger,
            "configured_s": configured, "samples_s": values, "median_s": statistics.median(values),
            "max_s": max(values), "ratio_median": statistics.median(values) / configured,
            "goal": "<= 1.2 x configured" if bfd else "reference (hold timer)",
            "met": statistics.median(values) <= 1.2 * configured if bfd else None}


def announce_withdraw(workdir: pathlib.Path, flips: int) -> dict[str, Any]:
    bfd = Bfd(300, 300, 3)
    env, ns, procs, monitor = environment(workdir, bfd)
    announce: list[float] = []
    withdraw: list[float] = []
    try:
        env.lbs[0].set_available(True)
        settle(env, bfd)
        for _ in range(flips):
            t0 = env.lbs[0].set_available(False)
            withdraw += [monitor.wait(VIP4, True, t0), monitor.wait(VIP6, True, t0)]
            time.sleep(0.3)
            t0 = env.lbs[0].set_available(True)
            announce += [monitor.wait(VIP4, False, t0), monitor.wait(VIP6, False, t0)]
            time.sleep(0.3)
    finally:
        env.close()
        procs.cleanup()
        ns.cleanup()
    return {name: {"samples_s": v, "median_s": statistics.median(v), "max_s": max(v), "goal_s": 0.5,
                   "met": max(v) <= 0.5} for name, v in (("announce", announce), ("withdraw", withdraw))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="failures per timer set (x2: IPv4 and IPv6)")
    parser.add_argument("--flips", type=int, default=10, help="target flips (x2: IPv4 and IPv6)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("fe_timings: needs root (network namespaces)", file=sys.stderr)
        return 1
    cases = [(Bfd(300, 300, 3), "SIGSTOP"), (Bfd(100, 100, 3), "SIGSTOP"), (Bfd(50, 50, 3), "SIGSTOP"),
             (Bfd(50, 50, 3), "nft drop"), (Bfd(20, 20, 3), "SIGSTOP"), (None, "SIGSTOP")]
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
                               "when": datetime.datetime.now(datetime.UTC).isoformat(), "detection": []}
    with tempfile.TemporaryDirectory(prefix="fe-bench-") as tmp:
        for i, (bfd, trigger) in enumerate(cases):
            work = pathlib.Path(tmp) / f"detect{i}"
            work.mkdir()
            results["detection"].append(detection(work, bfd, trigger, args.runs))
        work = pathlib.Path(tmp) / "announce"
        work.mkdir()
        results["announce_withdraw"] = announce_withdraw(work, args.flips)
    print_table(results)
    out = ROOT / "bench" / "results" / "fe_timings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(ROOT)}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    print("\nFailure detection: trigger in the FE -> VIP route deleted in the gateway's kernel (IPv4 + IPv6)")
    print(f"{'BFD rx/tx x mult':<18} {'trigger':<9} {'configured':>10} {'median':>8} {'max':>8} "
          f"{'median/conf':>11} {'goal met':>9}")
    for d in r["detection"]:
        label = "no BFD (hold 3s)" if d["bfd"] is None else f"{d['bfd'][0]}/{d['bfd'][1]} x {d['bfd'][2]}"
        met = "-" if d["met"] is None else ("yes" if d["met"] else "NO")
        print(f"{label:<18} {d['trigger']:<9} {d['configured_s'] * 1000:>8.0f}ms {d['median_s'] * 1000:>6.0f}ms "
              f"{d['max_s'] * 1000:>6.0f}ms {d['ratio_median']:>11.2f} {met:>9}")
    print("\nLB target change -> VIP route at the gateway's kernel (IPv4 + IPv6)")
    print(f"{'change':<10} {'median':>8} {'max':>8} {'goal':>8} {'goal met':>9}")
    for name, v in r["announce_withdraw"].items():
        print(f"{name:<10} {v['median_s'] * 1000:>6.0f}ms {v['max_s'] * 1000:>6.0f}ms {v['goal_s'] * 1000:>6.0f}ms "
              f"{'yes' if v['met'] else 'NO':>9}")


if __name__ == "__main__":
    sys.exit(main())
