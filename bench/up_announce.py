"""Announce and withdraw through the whole chain, on the default environment with every part real.

A target's ``Close`` of the last open stream of a conduit goes TAPA -> NSP (unregister) -> LB (NSP
watch; its Maglev maps empty) -> the LB's availability service -> frontend (no target: withdraw) -> BIRD
-> BGP -> the gateway router's kernel. ``Open`` of the first goes the same way to an announcement.
This measures both ends of that chain: from the moment the bench calls the TAPA's ``Close`` (``Open``)
until the VIP's route disappears from (appears in) the gateway router's kernel, IPv4 and IPv6.

Trench-b (attractor-b-1 with 2 FE+LB replicas, conduit-b-1, stream-b-i, target-b with 4 pods, gateway
gw-b1): three targets close their stream once; then, per cycle, target-b-0 closes (measured
withdrawal: it was the last target) and opens again (measured announcement: the first target).
The gateway's routes are read every 2 ms with ``ip -j route`` in the router's namespace.

    sudo .venv/bin/python bench/up_announce.py [--cycles 20]

Goal (issue 4): announce and withdraw within 500 ms of the target change.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import grpc
import runtime_env
from runtime_env import ROOT

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.runtime.local.layout import state_root

ENV_NAME, PREFIX = "bench-announce", "mbann"
TRENCH, CONDUIT, STREAM, ROUTER = "trench-b", "conduit-b-1", "stream-b-i", "gw-b1"
VIPS = ("203.0.113.1", "2001:db8:a1::1")
GOAL_S = 0.5


def meridio(*args: str, timeout: float = 600) -> str:
    return runtime_env.meridio(ENV_NAME, *args, timeout=timeout)


def tap(pod: str) -> tap_pb2_grpc.TapStub:
    channel = grpc.insecure_channel(f"unix:{state_root(ENV_NAME) / 'pods' / pod / 'ambassador.sock'}")
    return tap_pb2_grpc.TapStub(channel)  # type: ignore[no-untyped-call]


STREAM_MSG = tap_pb2.Stream(name=STREAM, conduit=tap_pb2.Conduit(name=CONDUIT, trench=tap_pb2.Trench(name=TRENCH)))


def announced(vip: str) -> bool:
    fam = "-6" if ":" in vip else "-4"
    out = subprocess.run(["ip", "-j", fam, "-n", f"{PREFIX}-rtr-{ROUTER}", "route", "show", vip, "proto", "bird"],
                         capture_output=True, text=True, check=False).stdout
    return bool(json.loads(out or "[]"))


def wait_for(state: bool, t0: float, timeout: float = 10.0) -> dict[str, float]:
    """Seconds from ``t0`` until every VIP's route is present (``state``) or gone at the gateway."""
    pending, seen = set(VIPS), {}
    while pending:
        now = time.monotonic()
        if now - t0 > timeout:
            raise SystemExit(f"VIPs {sorted(pending)} not {'announced' if state else 'withdrawn'} in {timeout}s")
        for vip in list(pending):
            if announced(vip) == state:
                seen[vip] = time.monotonic() - t0
                pending.discard(vip)
        time.sleep(0.002)
    return seen


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {"n": len(samples), "median_ms": round(statistics.median(samples) * 1e3, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1e3, 1),
            "max_ms": round(max(samples) * 1e3, 1), "samples_ms": [round(s * 1e3, 1) for s in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("up_announce: needs root (network namespaces)", file=sys.stderr)
        return 1
    env_file = runtime_env.default_environment(ENV_NAME, PREFIX)
    meridio("up", "-f", str(env_file), "--timeout", "240")
    withdraw: list[float] = []
    announce: list[float] = []
    others = [tap(f"target-b-{i}") for i in (1, 2, 3)]
    last = tap("target-b-0")
    try:
        wait_for(True, time.monotonic(), 30)
        for stub in others:
            stub.Close(STREAM_MSG, timeout=10)
        time.sleep(2.0)  # the LBs now have target-b-0 only; the VIPs stay announced
        wait_for(True, time.monotonic())
        for cycle in range(args.cycles):
            t0 = time.monotonic()
            last.Close(STREAM_MSG, timeout=10)
            w = wait_for(False, t0)
            time.sleep(1.0)
            t0 = time.monotonic()
            last.Open(STREAM_MSG, timeout=10)
            a = wait_for(True, t0)
            withdraw += w.values()
            announce += a.values()
            print(f"  cycle {cycle + 1}/{args.cycles}: withdrawn " +
                  ", ".join(f"{v} {s * 1e3:.0f} ms" for v, s in w.items()) + "; announced " +
                  ", ".join(f"{v} {s * 1e3:.0f} ms" for v, s in a.items()), flush=True)
            time.sleep(1.0)
    finally:
        meridio("down")
    results = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
               "chain": "TAPA Close/Open -> NSP -> LB -> availability -> frontend -> BIRD -> BGP -> gateway kernel",
               "cycles": args.cycles, "withdraw": summary(withdraw), "announce": summary(announce),
               "goal_ms": GOAL_S * 1e3}
    out = ROOT / "bench" / "results" / "up_announce.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nfull chain, {args.cycles} cycles, v4 and v6 VIPs ({results['date']})\n")
    print("| measure | median | p90 | max | goal |\n|---|---|---|---|---|")
    for name, key in (("last target's Close -> VIP withdrawn at the gateway", "withdraw"),
                      ("first target's Open -> VIP route at the gateway", "announce")):
        s = results[key]
        print(f"| {name} | {s['median_ms']} ms | {s['p90_ms']} ms | {s['max_ms']} ms | <= {GOAL_S * 1e3:.0f} ms |")
    print(f"\nsaved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
