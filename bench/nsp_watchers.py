"""NSP with many watchers: time to the first message per watcher, how many were refused, NSP memory.

    .venv/bin/python bench/nsp_watchers.py [--watchers 2000] [--channels 1] [--big] [--meridio PATH]

Starts ``meridio run nsp`` (the tests' sample configuration of trench-a) on a unix socket in a temporary
directory, registers one target (with ``--big``: the largest target the NSP accepts, or, on a build
without limits, the issue's 200 000 IPs and 1 MB strings), then opens ``--watchers`` target watches
spread over ``--channels`` client channels, all at once. Reports how many got their first list within
30 s, how many were refused (and with which status), the first-message latency p50/p99/max, and the
NSP's RSS (``/proc/<pid>/status`` VmRSS) and PSS (``smaps_rollup``) before and with the watchers open. Not a test: nothing is
asserted. Results: ``bench/results/nsp_watchers.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import grpc
import grpc.aio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from meridio.api.pb.nsp.v1 import model_pb2, targetregistry_pb2, targetregistry_pb2_grpc  # noqa: E402
from tests.integration.nsp_support import SAMPLE_CONFIG, wait_serving, write_config  # noqa: E402

FIRST_WITHIN_S = 30.0
details: set[str] = set()
"""The distinct refusals seen (code: message)."""


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stream_pb() -> model_pb2.Stream:
    return model_pb2.Stream(name="stream-a-i", conduit=model_pb2.Conduit(
        name="conduit-a-1", trench=model_pb2.Trench(name="trench-a")))


def target(big: bool, huge: bool) -> targetregistry_pb2.Target:
    if huge:  # the attack: only a build without limits stores it
        ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(200_000)]
        return targetregistry_pb2.Target(ips=ips, context={"identifier": "1", "x": "y" * 1_000_000},
                                         stream=stream_pb())
    if big:  # the largest the limits allow: 32 IPs, 16 context entries of 256 bytes
        ips = [f"172.16.1.{i}/24" for i in range(1, 33)]
        context = {"identifier": "1", **{f"k{i:02d}": "v" * 256 for i in range(15)}}
        return targetregistry_pb2.Target(ips=ips, context=context, stream=stream_pb())
    return targetregistry_pb2.Target(ips=["172.16.1.6/24", "fd00:0:0:1::6/64"], context={"identifier": "1"},
                                     stream=stream_pb())


async def watch_one(stub: targetregistry_pb2_grpc.TargetRegistryStub, flt: targetregistry_pb2.Target,
                    started: float, firsts: list[float], refused: collections.Counter[str],
                    stop: asyncio.Event) -> None:
    call = stub.Watch(flt)
    try:
        async for _ in call:
            firsts.append(time.monotonic() - started)
            break
        await stop.wait()
    except grpc.aio.AioRpcError as exc:
        refused[exc.code().name] += 1
        details.add(f"{exc.code().name}: {(exc.details() or '')[:100]}")
    finally:
        call.cancel()


async def measure(address: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    # One connection per channel (grpc would otherwise share one between channels to one address).
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.channels)]
    stubs = [targetregistry_pb2_grpc.TargetRegistryStub(c) for c in channels]
    try:
        try:
            await stubs[0].Register(target(args.big, args.huge), timeout=30)
            registered = "OK"
        except grpc.aio.AioRpcError as exc:
            registered = f"{exc.code().name}: {(exc.details() or '')[:80]}"
        rss_before, pss_before = rss_mib(pid), pss_mib(pid)
        flt = targetregistry_pb2.Target(status=targetregistry_pb2.Target.ANY, stream=stream_pb())
        firsts: list[float] = []
        refused: collections.Counter[str] = collections.Counter()
        stop = asyncio.Event()
        started = time.monotonic()
        tasks = [asyncio.ensure_future(watch_one(stubs[i % len(stubs)], flt, started, firsts, refused, stop))
                 for i in range(args.watchers)]
        deadline = started + FIRST_WITHIN_S
        while time.monotonic() < deadline and len(firsts) + sum(refused.values()) < args.watchers:
            await asyncio.sleep(0.1)
        rss_with, pss_with = rss_mib(pid), pss_mib(pid)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for c in channels:
            await c.close()
    lat = sorted(firsts)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    return {
        "register": registered, "watchers": args.watchers, "channels": args.channels,
        "first_within_30s": len(firsts), "refused": dict(refused),
        "no_first_message": args.watchers - len(firsts) - sum(refused.values()),
        "first_ms_p50": pct(0.5), "first_ms_p99": pct(0.99), "first_ms_max": pct(1.0),
        "first_ms_mean": round(statistics.mean(lat) * 1000, 1) if lat else None,
        "refusals": sorted(details)[:5], "nsp_rss_mib_before": round(rss_before, 1),
        "nsp_rss_mib_with_watchers": round(rss_with, 1), "nsp_pss_mib_before": round(pss_before, 1),
        "nsp_pss_mib_with_watchers": round(pss_with, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--watchers", type=int, default=2000)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--big", action="store_true", help="register the largest target the limits allow")
    p.add_argument("--huge", action="store_true", help="register the issue's 200 000-IP, 1 MB target")
    p.add_argument("--meridio", default=str(ROOT / ".venv" / "bin" / "meridio"))
    p.add_argument("--label", default="")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="nspw-") as tmp:
        base = pathlib.Path(tmp)
        write_config(base / "configuration.yaml", SAMPLE_CONFIG)
        address = f"unix:{base}/nsp.sock"
        proc = subprocess.Popen(
            [args.meridio, "run", "nsp", "--listen-address", address, "--config-file",
             str(base / "configuration.yaml"), "--datasource", str(base / "registry.db"), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_serving(address, None)
            result = asyncio.run(measure(address, proc.pid, args))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result.update(label=args.label, big=args.big, huge=args.huge, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  machine=f"{platform.node()} {os.cpu_count()} cpu", meridio=args.meridio)
    for k, v in result.items():
        print(f"{k:28} {v}")
    out = ROOT / "bench" / "results" / "nsp_watchers.json"
    runs = json.loads(out.read_text()) if out.exists() else []
    runs.append(result)
    out.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
