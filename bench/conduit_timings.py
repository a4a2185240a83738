#!/usr/bin/env python3
"""Conduit timings through the whole stack (run as root from the repository root):

    .venv/bin/python bench/conduit_timings.py [--cycles 50] [--interval-ms 2]

1. **Open -> first packet at the target**: from the TAPA ``Open`` call returning to the first new flow that
   reaches the target (the TAPA registers the target in NSP, the LB programs its Maglev map and routes,
   the packet crosses the proxy bridge).
2. **Close -> no new flows**: from the ``Close`` call returning to the last new flow that still reached
   the target (new flows sent later are all dropped by the LB).

With ``--cross-node``, a second bed runs beside the first, cycles alternating between them: the LB on
node-1 and the proxy and target on node-2 of a cluster network, joined by a VXLAN conduit (what
``tests/netns/test_conduit_vxlan.py`` builds), so the figures of a same-node and a cross-node target are
measured side by side.

Goal (issue 5): p99 <= 500 ms for both. Everything is real: NSP, IPAM, LB, proxy, TAPA and example
target processes in namespaces (``tests/netns/conduit_support.py``); only the frontend's FRONTEND
registration is faked (it just unblocks the LB). The prober runs in a thread of this process switched
into the client namespace and sends one UDP datagram per ``--interval-ms``, each from a fresh socket (a
new flow, hence a new Maglev lookup); the example target answers each with its name. The resolution of
both figures is one probe interval. All processes share the VM's 2 vCPUs. Prints a table and writes
``bench/results/conduit_timings.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import topology
from tests.conftest import NetnsFactory, Procs
from tests.netns.conduit_support import VIP4, ConduitEnv
from tests.netns.test_conduit_vxlan import Cluster

UDP_PORT, STREAM = 4003, "stream-a-ii"  # flow-a-udp of the default CONFIG
TARGET = "target-1"


class Prober(threading.Thread):
    """New UDP flows to the VIP at a fixed rate; records (send time, answered-by-TARGET) per probe."""

    def __init__(self, client_ns: str, vip: str, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.client_ns, self.dst, self.interval = client_ns, (vip, port), interval
        self.answered: list[float] = []
        """Send times (monotonic) of the probes the target answered, in sending order."""
        self.sent = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def answered_between(self, start: float, end: float = float("inf")) -> list[float]:
        with self._lock:
            return [t for t in self.answered if start <= t < end]

    def run(self) -> None:
        with netnsmod.entered(self.client_ns):
            self._loop()

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, float] = {}
        next_send = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.sendto(b"probe", self.dst)
                pending[s] = now
                sel.register(s, selectors.EVENT_READ)
                self.sent += 1
                next_send += self.interval
            for key, _ in sel.select(timeout=max(0.0, next_send - time.monotonic())):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(2048)  # type: ignore[attr-defined]
                except OSError:
                    data = b""
                if data.decode(errors="replace").strip().startswith(TARGET):
                    with self._lock:
                        self.answered.append(pending[s])  # type: ignore[index]
            for s, sent in list(pending.items()):
                if now - sent > 1.0:  # an answer later than 1 s does not count
                    sel.unregister(s)
                    s.close()
                    del pending[s]
        for s in pending:
            s.close()


def tap(pod: Any, method: str) -> float:
    stream = tap_pb2.Stream(name=STREAM, conduit=tap_pb2.Conduit(name="conduit-a-1",
                                                                 trench=tap_pb2.Trench(name="trench-a")))
    with grpc.insecure_channel(f"unix:{pod.socket}") as ch:
        getattr(tap_pb2_grpc.TapStub(ch), method)(stream, timeout=10)
    return time.monotonic()


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def cycle(pod: Any, prober: Prober, quiet: float) -> tuple[float | None, float | None]:
    """One Open/Close cycle: (open -> first answered flow, close -> last answered flow), in ms."""
    opened = tap(pod, "Open")
    ok = wait_until(lambda: prober.answered_between(opened), 10.0)
    first = (prober.answered_between(opened)[0] - opened) * 1000 if ok else None
    time.sleep(0.1)
    closed = tap(pod, "Close")
    # done when no probe sent during the last `quiet` seconds was answered (and one second passed)
    wait_until(lambda: time.monotonic() - closed > 1.0 and
               not prober.answered_between(time.monotonic() - quiet - 0.5, time.monotonic() - 0.5), 15.0)
    late = prober.answered_between(closed)
    last = (late[-1] - closed) * 1000 if late else 0.0
    return first, last


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1), "p99_ms": round(percentile(values, 99), 1),
            "min_ms": round(min(values), 1), "max_ms": round(max(values), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--cross-node", action="store_true", help="also a bed with a VXLAN conduit, side by side")
    args = ap.parse_args()
    netns, procs = NetnsFactory(), Procs(pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench-")))
    beds: dict[str, tuple[Any, Any]] = {}
    nodes = None
    envs = []
    try:
        env = ConduitEnv(netns, procs, pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench-tmp-")))
        envs.append(env)
        env.add_lb("lb-1", real=True)
        env.add_proxy("node-1")
        beds["same_node"] = (env.add_target_pod(TARGET, "node-1"),
                             Prober(env.client(), VIP4.split("/")[0], UDP_PORT, args.interval_ms / 1000))
        if args.cross_node:
            nodes = Cluster(netns.prefix)
            topology.ensure_cluster(nodes.env, nodes.naming)
            cross = ConduitEnv(netns, procs, pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench-tmp-")),
                               trench="trench-a")
            envs.append(cross)
            cross.netns = lambda name: netns(f"x-{name}")  # its own namespaces beside the first bed's
            cross.add_lb("lb-1", real=True, extra=("--host", "node-1", "--pod-ip", nodes.ips("node-1", 2)),
                         before_start=nodes.wire("node-1", 2))
            cross.add_proxy("node-2", extra=("--pod-ip", nodes.ips("node-2", 2)), before_start=nodes.wire("node-2", 2))
            beds["cross_node"] = (cross.add_target_pod(TARGET, "node-2"),
                                  Prober(cross.client(), VIP4.split("/")[0], UDP_PORT, args.interval_ms / 1000))
        for pod, prober in beds.values():
            prober.start()
            cycle(pod, prober, 0.3)  # warm-up: links made, watches established
        opens: dict[str, list[float]] = {k: [] for k in beds}
        closes: dict[str, list[float]] = {k: [] for k in beds}
        failed = 0
        for i in range(args.cycles):
            order = list(beds) if i % 2 == 0 else list(reversed(beds))
            for key in order:
                pod, prober = beds[key]
                first, last = cycle(pod, prober, 0.3)
                if first is None or last is None:
                    failed += 1
                    continue
                opens[key].append(first)
                closes[key].append(last)
                print(f"cycle {i + 1:3d} {key:10s}: open->first packet {first:7.1f} ms   close->no new flows "
                      f"{last:7.1f} ms", flush=True)
        for _, prober in beds.values():
            prober.stop.set()
        result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "kernel": platform.release()},
                  "probe_interval_ms": args.interval_ms, "cycles": args.cycles, "failed_cycles": failed,
                  "open_to_first_packet": summary(opens["same_node"]),
                  "close_to_no_new_flows": summary(closes["same_node"]),
                  "goal_p99_ms": 500, "probes_sent": sum(p.sent for _, p in beds.values())}
        if "cross_node" in beds:
            result["cross_node"] = {"open_to_first_packet": summary(opens["cross_node"]),
                                    "close_to_no_new_flows": summary(closes["cross_node"])}
    finally:
        for e in envs:
            e.close()
        if nodes is not None:
            topology.remove_namespaces(nodes.naming)
        netns.cleanup()
    print()
    print(f"{'':40}{'p50 ms':>9}{'p99 ms':>9}{'min':>8}{'max':>8}   (n={len(opens['same_node'])} per bed, goal p99 <= 500 ms)")
    for key in ("open_to_first_packet", "close_to_no_new_flows"):
        for label, part in (("", result), ("cross-node ", result.get("cross_node"))):
            if part:
                r = part[key]
                print(f"{label + key:40}{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}{r['min_ms']:8.1f}{r['max_ms']:8.1f}")
    out = ROOT / "bench" / "results" / "conduit_timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
