"""``meridio demo``: the first thing to run — the default environment up, real traffic, where to go next.

Brings up the built-in default environment (Meridio's e2e environment, dual-stack: two trenches,
three attractors, BIRD gateway routers, eight targets), sends 400 TCP and 400 UDP connections to the
IPv4 and the IPv6 VIP of trench-a from its traffic generator, shows how they spread over the targets
(and how many were lost: there should be none), then tells how to explore and how to tear down.
It says so plainly, with a non-zero exit, when something does not work.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from meridio.cli import up as upcmd
from meridio.cli.common import DEFAULT_ENV, table
from meridio.cli.traffic import run_traffic
from meridio.runtime.local import client

__all__ = ["CHECKS", "register"]

CHECKS = (("TCP v4", "203.0.113.1", 4000, False), ("TCP v6", "2001:db8:a1::1", 4000, False),
          ("UDP v4", "203.0.113.1", 4003, True), ("UDP v6", "2001:db8:a1::1", 4003, True))
"""trench-a's vip-a-1 (flows flow-a-z-tcp on 4000 and flow-a-z-udp on 4003, stream stream-a-i)."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="bring the default environment up, send traffic, show how to explore",
                              description=__doc__.splitlines()[0])
    p.add_argument("--nconn", type=int, default=400, help="connections per check (default 400)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    print("== 1/3 meridio up: the default environment (Meridio's e2e environment, dual-stack)", flush=True)
    code = upcmd.up(None, 240.0)
    env = client.saved_environment(client.layout_for(DEFAULT_ENV))
    if code != 0 or env is None:
        print("the environment is not ready: see 'meridio status'", file=sys.stderr)
        return 1
    router = env.router("gw-a1")
    if router is None:
        print("the default environment has no router gw-a1", file=sys.stderr)
        return 1
    print(f"\n== 2/3 meridio traffic: {args.nconn} connections per check from trench-a's traffic generator "
          f"(behind {router.name}) to vip-a-1", flush=True)
    reports: dict[str, dict[str, Any]] = {}
    for label, vip, port, udp in CHECKS:
        argv = ["--address", vip, "--port", str(port), "--nconn", str(args.nconn), "--timeout", "60"]
        reports[label] = run_traffic(env, router, argv + (["--udp"] if udp else []), 120)
    print(_distribution(reports))
    ok = all(r["lost"] == 0 and len(r["hosts"]) == 4 for r in reports.values())
    print("\n" + ("every connection was answered, spread over the 4 targets of stream-a-i" if ok else
                  "SOMETHING IS WRONG: connections were lost or did not reach all 4 targets (see meridio status)"))
    print(_explore())
    return 0 if ok else 1


def _distribution(reports: dict[str, dict[str, Any]]) -> str:
    hosts = sorted({h for r in reports.values() for h in r["hosts"]})
    rows = [(h, *(r["hosts"].get(h, 0) for r in reports.values())) for h in hosts]
    rows.append(("lost", *(r["lost"] for r in reports.values())))
    header = ("TARGET", *(f"{label} " + (f"[{r['address']}]" if ":" in r["address"] else r["address"]) + f":{r['port']}"
                          for label, r in reports.items()))
    return table(header, rows)


def _explore() -> str:
    m = ".venv/bin/meridio" if os.path.exists(".venv/bin/meridio") else "meridio"
    return f"""
== 3/3 explore (as root), then tear down
  {m} status                                   pods, BGP/BFD sessions, streams, targets, what is not ready
  {m} get pods | get flows | get vips -o yaml  the runtime's pods and the applied Meridio resources
  {m} traffic --trench trench-b --vip 203.0.113.1 --port 4000    same VIP, other trench, other targets
  {m} scale deployment/target-a --replicas 3   then send traffic again: 3 targets
  {m} target close -t trench-a -c conduit-a-1 -s stream-a-i --pod target-a-0    target-a-0 gets no more traffic
  {m} apply -f examples/e2e/new-vip.yaml       a new VIP, announced and served (see examples/e2e/README.md)
  {m} traffic --trench trench-a --vip 203.0.113.1 --port 4000 --duration 10   long-lived (ctraffic-like)
  {m} logs stateless-lb-frontend-attractor-a-1-0 -c frontend
  {m} down                                     removes every namespace, process and file it made"""
