#!/usr/bin/env python3
"""What mutual TLS between components costs (run as root from the repository root):

    .venv/bin/python bench/tls_cost.py [--cycles 30] [--calls 2000] [--handshakes 200]

Two conduit test beds run side by side (``tests/netns/conduit_support.py``: real NSP, IPAM, LB, proxy,
TAPA and example target processes in namespaces), one with plain gRPC and one with mutual TLS on every
component connection (each process its own certificate from the bed's CA). Measured, interleaved:

1. **Open -> first packet** at the target (as ``bench/conduit_timings.py``): the cycles alternate
   between the beds, each bed with its own prober (one new UDP flow per ``--interval-ms``).
2. **Handshake**: a new channel to the bed's NSP and its first call (``grpc.health.v1`` Check), p50/p99
   over ``--handshakes`` rounds alternating plain / TLS.
3. **Per call** on an open channel: ``--calls`` Check calls, alternating blocks of 100 between the beds.

The NSPs listen on unix sockets (as in the local runtime); TLS is TLS 1.3 with ECDSA P-256 certificates.
All processes share the VM's 2 vCPUs. Prints a table and writes ``bench/results/tls_cost.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from conduit_timings import TARGET, UDP_PORT, Prober, cycle, summary  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from meridio.common import grpcutil  # noqa: E402
from meridio.common import identity as idm  # noqa: E402
from meridio.common import tls as tlsmod  # noqa: E402
from tests.conftest import NetnsFactory, Procs  # noqa: E402
from tests.netns.conduit_support import VIP4, ConduitEnv  # noqa: E402

VARIANTS = ("plain", "mtls")


def bed(netns: NetnsFactory, procs: Procs, tls: bool) -> ConduitEnv:
    env = ConduitEnv(netns, procs, pathlib.Path(tempfile.mkdtemp(prefix="tls-bench-tmp-")), tls=tls)
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    env.add_target_pod(TARGET, "node-1")
    return env


def client_tls(env: ConduitEnv) -> tlsmod.Tls | None:
    found = env.tls_env(idm.Component.RUNTIME, "bench", trench=None)
    return tlsmod.Tls(pathlib.Path(found[tlsmod.DIR_ENV])) if found else None


async def grpc_costs(envs: dict[str, ConduitEnv], handshakes: int, calls: int) -> dict[str, Any]:
    tls = {v: client_tls(e) for v, e in envs.items()}
    request = health_pb2.HealthCheckRequest(service="")
    hand: dict[str, list[float]] = {v: [] for v in envs}
    per_call: dict[str, list[float]] = {v: [] for v in envs}

    async def one_handshake(v: str) -> None:
        t = time.perf_counter()
        ch = grpcutil.channel(envs[v].nsp_address, tls=tls[v], server=idm.Component.NSP)
        try:
            await health_pb2_grpc.HealthStub(ch).Check(request, timeout=5)
            hand[v].append((time.perf_counter() - t) * 1000)
        finally:
            await ch.close()

    for i in range(handshakes):
        for v in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
            await one_handshake(v)
    channels = {v: grpcutil.channel(envs[v].nsp_address, tls=tls[v], server=idm.Component.NSP) for v in envs}
    try:
        stubs = {v: health_pb2_grpc.HealthStub(ch) for v, ch in channels.items()}
        for v in envs:
            await stubs[v].Check(request, timeout=5)  # connected
        for block in range(max(1, calls // 100)):
            for v in (VARIANTS if block % 2 == 0 else VARIANTS[::-1]):
                for _ in range(100):
                    t = time.perf_counter()
                    await stubs[v].Check(request, timeout=5)
                    per_call[v].append((time.perf_counter() - t) * 1000)
    finally:
        for ch in channels.values():
            await ch.close()
    return {"handshake": {v: summary(hand[v]) for v in envs}, "per_call": {v: summary(per_call[v]) for v in envs}}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--handshakes", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    args = ap.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    procs = Procs(pathlib.Path(tempfile.mkdtemp(prefix="tls-bench-")))
    factories = {v: NetnsFactory() for v in VARIANTS}  # one per bed: the beds use the same pod names
    envs: dict[str, ConduitEnv] = {}
    probers: dict[str, Prober] = {}
    try:
        for v in VARIANTS:
            envs[v] = bed(factories[v], procs, tls=(v == "mtls"))
            probers[v] = Prober(envs[v].client(), VIP4.split("/")[0], UDP_PORT, args.interval_ms / 1000)
            probers[v].start()
        for v in VARIANTS:
            cycle(envs[v].targets[TARGET], probers[v], 0.3)  # warm-up: links made, watches established
        opens: dict[str, list[float]] = {v: [] for v in VARIANTS}
        failed = {v: 0 for v in VARIANTS}
        for i in range(args.cycles):
            for v in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
                first, _ = cycle(envs[v].targets[TARGET], probers[v], 0.3)
                if first is None:
                    failed[v] += 1
                else:
                    opens[v].append(first)
            print(f"cycle {i + 1:3d}: " + "  ".join(f"{v} {opens[v][-1] if opens[v] else float('nan'):7.1f} ms"
                                                    for v in VARIANTS), flush=True)
        for p in probers.values():
            p.stop.set()
        costs = asyncio.run(grpc_costs(envs, args.handshakes, args.calls))
    finally:
        for p in probers.values():
            p.stop.set()
        for e in envs.values():
            e.close()
        for f in factories.values():
            f.cleanup()
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": len(os.sched_getaffinity(0)), "kernel": platform.release()},
              "cycles": args.cycles, "failed_cycles": failed,
              "open_to_first_packet": {v: summary(opens[v]) for v in VARIANTS}, **costs}
    print()
    print(f"{'':24}{'plain p50':>10}{'p99':>8}{'mTLS p50':>10}{'p99':>8}{'ratio p50':>10}")
    for key in ("open_to_first_packet", "handshake", "per_call"):
        a, b = result[key]["plain"], result[key]["mtls"]
        print(f"{key:24}{a['p50_ms']:10.2f}{a['p99_ms']:8.2f}{b['p50_ms']:10.2f}{b['p99_ms']:8.2f}"
              f"{b['p50_ms'] / a['p50_ms'] if a['p50_ms'] else float('nan'):10.2f}")
    out = ROOT / "bench" / "results" / "tls_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0 if not any(failed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
