#!/usr/bin/env python3
"""Load balancer benchmarks, side by side in one run (run as root from the repository root):

    .venv/bin/python bench/lb_bench.py [--rounds 20] [--seconds 1] [--quick]

1. **Forwarding cost**: client -> LB namespace -> target (tests/netns/lb_topology.py), the variants below, each
   in a topology of its own set up once, measured in interleaved rounds (the order rotates each round; UDP
   of all variants, then TCP of all), so the figures compared in a round are taken seconds apart:
   ``plain`` = a main-table route to the VIP, no nftables table, no rules; ``plain-rule`` = the same plus
   one ``ip rule fwmark`` the packets walk past (what policy routing costs on its own); ``lb-1`` = the load
   balancer's nftables data path alone (``NSM_FASTPATH=false``: defrag hooks, VIP dispatch, one flow,
   jhash -> Maglev map -> fwmark -> policy route); ``fast-1`` = the same ruleset with the eBPF fast path
   attached (the whole nftables ruleset stays installed as the slow path; per-CPU counters on);
   ``fast-1000`` = the fast path with 1000 flows over 100 VIPs (10 per VIP), the measured flow the highest
   priority of its VIP; ``fast-1000-last`` = the same with the measured flow the LOWEST of its VIP's 10
   (the program walks 9 flows first); ``plain6`` and ``fast6-1``: ``plain`` and ``fast-1`` over IPv6.
   Figures: 64-byte-payload UDP packets/s delivered to the target
   (``bench/lb_udpsend.c``, sendmmsg, 16 flows; counted by an nft counter in the target) and TCP Gbit/s
   (iperf2, one stream), plus the sender's CPU time per delivered UDP packet (the kernel forwards in the
   sender's context, so this is the cost of the whole path). Ratios per round (lb-1 / plain, plain-rule /
   plain, lb-1 / plain-rule, and those of :data:`FAST_RATIOS`); medians and ranges reported.
2. **Target change**: time to add or remove one target (Maglev rebuild + plan + one nft transaction + the
   fast path's table switch) in a stream of 10 targets at max-targets 100, 1000 and 10000 (M = 9973, 99991,
   999983); Maglev cache cleared before each change. Goals: <= 10 ms at 100, <= 1 s at 10000.
3. **Maglev disruption**: mean collateral disruption when one of N targets leaves (M = 9973), next to
   the paper's figures (N=10: <= 1 %, N=100: <= 2.5 %).

Sender, LB and target all share the VM's 2 vCPUs (and whatever else runs): absolute figures are
VM-specific, only the ratios measured side by side mean something. Prints a table and writes
``bench/results/lb_bench.json``.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import pathlib
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meridio.api import model  # noqa: E402
from meridio.kernel import (
    bpf,  # noqa: E402
    nftables,  # noqa: E402
)
from meridio.kernel import netns as netnsmod  # noqa: E402
from meridio.kernel.netlink import Netlink  # noqa: E402
from meridio.loadbalancer import datapath, fastmaps, fastpath, maglev, plan, ruleset  # noqa: E402
from meridio.loadbalancer import flows as fl  # noqa: E402
from tests.conftest import NetnsFactory, Procs  # noqa: E402
from tests.netns import lb_topology as lbt  # noqa: E402

VIP = "203.0.113.10"
VIP6 = "2001:db8:f::10"
UDP_PORT, TCP_PORT = 7000, 5201
RESULTS = ROOT / "bench" / "results" / "lb_bench.json"


def _median_range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- 1. forwarding ---------------------------------------------------------------------------------

def _flows_1() -> tuple[list[str], list[model.Flow]]:
    return [VIP, VIP6], [lbt.model_flow("bench", protocols=("tcp", "udp"), dports=(str(UDP_PORT), str(TCP_PORT)),
                                        vips=(VIP, VIP6))]


def _flows_1000(measured_last: bool) -> tuple[list[str], list[model.Flow]]:
    """1000 flows, 10 on each of 100 VIPs; the measured flow is the first (or the last) of its VIP's 10."""
    vips = [f"203.0.113.{i}" for i in range(1, 101)]
    flows = []
    for v in vips:
        for j in range(10):
            if v == VIP and j == 9:
                flows.append(lbt.model_flow(f"f-{v}-{j}", priority=1 if measured_last else 1000,
                                            protocols=("tcp", "udp"), dports=(str(UDP_PORT), str(TCP_PORT)),
                                            vips=(v,)))
            else:
                flows.append(lbt.model_flow(f"f-{v}-{j}", priority=100 - j, protocols=("tcp", "udp"),
                                            dports=(str(6000 + j),), sources=("198.51.100.0/24",), vips=(v,)))
    return vips, flows


class Forwarding:
    """One client -> LB -> target topology of its own, set up once in one mode (so rounds switch between
    modes by switching topology, which costs nothing, and measurements compared in a round are seconds
    apart at most)."""

    def __init__(self, topo: lbt.LbTopology, procs: Procs, sender: str, mode: str) -> None:
        self.topo, self.procs, self.sender = topo, procs, sender
        self.vip = VIP6 if "6" in mode.split("-")[0] else VIP
        self.lb = lbt.LbUnderTest(topo, fastpath=mode.startswith("fast"))
        self.target_ns = topo.targets[1]
        netnsmod.run(self.target_ns, ["nft", "-f", "-"], input="\n".join([
            "add table inet bench", "add counter inet bench rx",
            "add chain inet bench pre { type filter hook prerouting priority -400; policy accept; }",
            f'add rule inet bench pre udp dport {UDP_PORT} counter name "rx"']) + "\n")
        procs.start(["iperf", "-s", "-B", self.vip, "-p", str(TCP_PORT)] + (["-V"] if ":" in self.vip else []),
                    ns=self.target_ns, name=f"iperf-{mode}")
        if mode.startswith("plain"):  # a main-table route to the VIP: no nftables table
            self.lb.datapath.remove()
            with Netlink(self.topo.lb) as nl:
                if mode == "plain6":
                    nl.replace_route(f"{VIP6}/128", gateway=lbt.target_ip(1, 6))
                else:
                    nl.replace_route(f"{VIP}/32", gateway=lbt.target_ip(1, 4))
                if mode == "plain-rule":  # ... plus the LB's kind of fwmark rule, which the packets walk past
                    nl.replace_route("0.0.0.0/0", gateway=lbt.target_ip(1, 4), table=5001)
                    nl.add_rule(priority=90, table=5001, family=socket.AF_INET, fwmark=5001)
        else:
            many = mode.endswith("1000") or mode.endswith("1000-last")
            vips, flows = _flows_1000(measured_last=mode.endswith("-last")) if many else _flows_1()
            self.lb.program(flows=flows, streams={"stream-a": [1]}, vips=vips)

    def _rx(self) -> int:
        out = netnsmod.run(self.target_ns, ["nft", "-j", "list", "counter", "inet", "bench", "rx"]).stdout
        return int(json.loads(out)["nftables"][1]["counter"]["packets"])

    def udp_pps(self, seconds: float) -> tuple[float, float, float]:
        """(delivered packets/s, delivered/sent, sender CPU ns per delivered packet)."""
        before = self._rx()
        out, cpu = _run_with_cpu(netnsmod.exec_argv(self.topo.client, [
            self.sender, self.vip, str(UDP_PORT), "64", str(seconds), "16"]))
        time.sleep(0.2)
        delivered = self._rx() - before
        return delivered / seconds, delivered / max(1, int(out.strip())), cpu / max(1, delivered) * 1e9

    def tcp_gbps(self, seconds: float) -> float:
        out = netnsmod.run(self.topo.client, ["iperf", "-c", self.vip, "-p", str(TCP_PORT), "-t", str(seconds),
                                              "-y", "C"] + (["-V"] if ":" in self.vip else []),
                           timeout=seconds + 30).stdout.strip().splitlines()
        return int(out[-1].split(",")[-1]) / 1e9


MODES = ("plain", "plain-rule", "lb-1", "fast-1", "fast-1000", "fast-1000-last", "plain6", "fast6-1")
FAST_RATIOS = (
    ("udp_pps:fast-1:plain", "udp_fast_vs_plain", "UDP 64 B pps, fast path (full ruleset, counters) / plain routing"),
    ("tcp_gbps:fast-1:plain", "tcp_fast_vs_plain", "TCP Gbit/s, fast path / plain routing"),
    ("udp_ns_per_packet:fast-1:plain", "cpu_fast_vs_plain", "sender CPU per packet, fast path / plain routing"),
    ("udp_pps:fast-1:lb-1", "udp_fast_vs_nft", "UDP 64 B pps, fast path / nftables path (lb-1)"),
    ("tcp_gbps:fast-1:lb-1", "tcp_fast_vs_nft", "TCP Gbit/s, fast path / nftables path (lb-1)"),
    ("udp_pps:fast-1000:fast-1", "udp_fast_1000_vs_1", "UDP 64 B pps, fast path, 1000 flows over 100 VIPs / 1 flow"),
    ("tcp_gbps:fast-1000:fast-1", "tcp_fast_1000_vs_1", "TCP Gbit/s, fast path, 1000 flows over 100 VIPs / 1 flow"),
    ("udp_pps:fast-1000-last:fast-1", "udp_fast_1000_last_vs_1",
     "UDP 64 B pps, fast path, same, measured flow last of the 10 on its VIP / 1 flow"),
    ("udp_pps:fast6-1:plain6", "udp_fast6_vs_plain6", "IPv6: UDP 64 B pps, fast path / plain routing"),
    ("tcp_gbps:fast6-1:plain6", "tcp_fast6_vs_plain6", "IPv6: TCP Gbit/s, fast path / plain routing"),
    ("udp_ns_per_packet:fast6-1:plain6", "cpu_fast6_vs_plain6", "IPv6: sender CPU per packet, fast path / plain"),
)
FAST_GOALS = {"udp_fast_vs_plain": ">= 1.0", "tcp_fast_vs_plain": ">= 1.0", "cpu_fast_vs_plain": "<= 1.0",
              "udp_fast_1000_vs_1": ">= 0.95", "tcp_fast_1000_vs_1": ">= 0.95", "udp_fast6_vs_plain6": "(measured)",
              "tcp_fast6_vs_plain6": "(measured)", "cpu_fast6_vs_plain6": "(measured)"}


def _run_with_cpu(argv: list[str]) -> tuple[str, float]:
    """Run ``argv``; its stdout and the CPU seconds (user + system) it used.

    With veths, the kernel forwards a sent packet in the sender's own context (softirq on the way out of
    the syscall), through the LB namespace to the target: the sender's CPU time per packet is the cost of
    the whole path.
    """
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return out.read().decode(), usage.ru_utime + usage.ru_stime


def bench_forwarding(rounds: int, seconds: float, sender: str) -> dict[str, Any]:
    factory, procs = NetnsFactory(), Procs(pathlib.Path(tempfile.mkdtemp(prefix="lb-bench-")))
    modes = MODES
    raw: dict[str, dict[str, list[float]]] = {
        m: {"udp_pps": [], "delivery": [], "udp_ns_per_packet": [], "tcp_gbps": []}
        for m in modes}
    try:
        fwds = {}
        for short, mode in zip("prabcdefgh", modes):
            topo = lbt.build(lambda name, short=short: factory(f"{short}{name}"), targets=1,
                             vips={4: (VIP,), 6: ("2001:db8:f::10",)})
            fwds[mode] = Forwarding(topo, procs, sender, mode)
        time.sleep(0.5)
        for r in range(rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]  # rotate: no mode always goes first
            udp = {mode: fwds[mode].udp_pps(seconds) for mode in order}
            tcp = {mode: fwds[mode].tcp_gbps(seconds) for mode in order}
            for mode in modes:
                (pps, delivery, ns), gbps = udp[mode], tcp[mode]
                for key, value in (("udp_pps", pps), ("delivery", delivery), ("udp_ns_per_packet", ns),
                                   ("tcp_gbps", gbps)):
                    raw[mode][key].append(value)
                print(f"  round {r + 1}/{rounds} {mode:12s} udp {pps / 1e3:7.1f} kpps (delivered {delivery:.3f}, "
                      f"{ns:6.0f} ns CPU/packet)  tcp {gbps:6.2f} Gbit/s", flush=True)
        for fwd in fwds.values():
            fwd.lb.close()
    finally:
        procs.cleanup()
        factory.cleanup()
    ratios = {
        "udp_lb1_vs_plain": [a / b for a, b in zip(raw["lb-1"]["udp_pps"], raw["plain"]["udp_pps"])],
        "udp_rule_vs_plain": [a / b for a, b in zip(raw["plain-rule"]["udp_pps"], raw["plain"]["udp_pps"])],
        "udp_lb1_vs_rule": [a / b for a, b in zip(raw["lb-1"]["udp_pps"], raw["plain-rule"]["udp_pps"])],
        "tcp_rule_vs_plain": [a / b for a, b in zip(raw["plain-rule"]["tcp_gbps"], raw["plain"]["tcp_gbps"])],
        "tcp_lb1_vs_plain": [a / b for a, b in zip(raw["lb-1"]["tcp_gbps"], raw["plain"]["tcp_gbps"])],
    }
    for key, name, _ in FAST_RATIOS:
        metric, num, den = key.split(":")
        ratios[name] = [x / y for x, y in zip(raw[num][metric], raw[den][metric])]
    return {"raw": raw, "ratios": {k: {**_median_range(v), "rounds": v} for k, v in ratios.items()},
            "medians": {m: {k: statistics.median(v) for k, v in raw[m].items()} for m in modes}}


# --- 2. target change ------------------------------------------------------------------------------

def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _update_config(ids: list[int], max_targets: int) -> ruleset.LbConfig:
    targets = tuple(fl.TargetSpec(i, (ipaddress.ip_address(f"169.254.101.{i}"),)) for i in ids)
    flow = fl.flow_spec(lbt.model_flow("bench", vips=(VIP,), dports=("80",)))
    return ruleset.LbConfig(vips=(ipaddress.ip_network(f"{VIP}/32"),), flows=(flow,),
                            streams=(ruleset.StreamState("stream-a", max_targets, 5000, targets),))


def _update_case(nft: nftables.Nft, fast: fastpath.FastPath, max_targets: int, changes: int) -> dict[str, Any]:
    """Load a stream of 10 targets, then remove and re-add target 10 ``changes`` times, timing each step."""
    dp = datapath.NftDataPath(nft)
    dp.remove()
    full = list(range(1, 11))
    ruleset.maglev_table.cache_clear()
    _, first = _timed(lambda: dp.apply(ruleset.render(_update_config(full, max_targets))))
    fast.apply(_update_config(full, max_targets))
    rows = []
    for change in range(changes):
        ids = full[:-1] if change % 2 == 0 else full
        ruleset.maglev_table.cache_clear()  # time the Maglev rebuild, not a cache hit
        fastmaps._slot_table.cache_clear()
        config = _update_config(ids, max_targets)
        desired, t_render = _timed(lambda config=config: ruleset.render(config))  # type: ignore[misc]
        commands, t_plan = _timed(lambda desired=desired: plan.plan(dp.installed, desired))  # type: ignore[misc]
        _, t_nft = _timed(lambda commands=commands: nft.apply(commands))  # type: ignore[misc]
        dp.installed = plan.Installed.of(desired)
        fast_result, t_fast = _timed(lambda config=config: fast.apply(config))  # type: ignore[misc]
        changed = sum(len(cmd.split(",")) for cmd in commands
                      if cmd.startswith("add element") and " s-stream-a " in cmd)
        rows.append({"render_s": t_render, "plan_s": t_plan, "nft_s": t_nft, "fast_s": t_fast,
                     "total_s": t_render + t_plan + t_nft + t_fast, "buckets_changed": changed,
                     "fast_buckets_written": fast_result.buckets_written})
    dp.remove()
    return {"m": maglev.table_size(max_targets), "targets": 10, "first_load_s": first,
            "total_s": _median_range([r["total_s"] for r in rows]),
            "render_s": statistics.median(r["render_s"] for r in rows),
            "plan_s": statistics.median(r["plan_s"] for r in rows),
            "nft_s": statistics.median(r["nft_s"] for r in rows),
            "fast_s": statistics.median(r["fast_s"] for r in rows),
            "fast_writing_s": statistics.median([r["fast_s"] for r in rows if r["fast_buckets_written"]] or [0.0]),
            "to_fast_path_s": _median_range([r["render_s"] + r["fast_s"] for r in rows]),
            "buckets_changed": statistics.median(r["buckets_changed"] for r in rows), "changes": rows}


def bench_update(max_targets_list: list[int], changes: int) -> dict[str, Any]:
    factory = NetnsFactory()
    out: dict[str, Any] = {}
    pins = pathlib.Path(tempfile.mkdtemp(prefix="lb-bench-bpffs-"))
    bpf.mount_bpffs(pins)
    try:
        ns = factory("upd")
        with nftables.Nft(netns=ns) as nft, Netlink(ns) as nl:
            for max_targets in max_targets_list:
                fast = fastpath.FastPath(nl, pin_dir=pins, first_fwmark=5001, netns=ns)
                fast.start()
                try:
                    case = out[str(max_targets)] = _update_case(nft, fast, max_targets, changes)
                finally:
                    fast.remove()
                print(f"  max-targets {max_targets:5d} M={case['m']:6d}: change median "
                      f"{case['total_s']['median'] * 1e3:8.1f} ms (first load {case['first_load_s']:.2f} s)",
                      flush=True)
    finally:
        bpf.unmount_bpffs(pins)
        factory.cleanup()
    return out


# --- 3. Maglev disruption --------------------------------------------------------------------------

def bench_disruption(samples_10: int, samples_100: int) -> dict[str, Any]:
    rnd = random.Random(2026)
    m = maglev.table_size(100)
    result = {}
    for n, samples, paper in ((10, samples_10, 0.01), (100, samples_100, 0.025)):
        means = []
        for _ in range(samples):
            ids = sorted(rnd.sample(range(1, 101), n))
            full = maglev.populate(ids, m, 100)
            means.append(statistics.mean(maglev.disruption(full, maglev.populate([i for i in ids if i != g], m, 100),
                                                           [g]) for g in ids))
        result[str(n)] = {"m": m, "sets": samples, "mean": statistics.mean(means), "worst_set": max(means),
                          "paper": paper}
        print(f"  N={n:3d}: mean collateral {statistics.mean(means) * 100:.2f} % (worst set "
              f"{max(means) * 100:.2f} %), paper {paper * 100:.1f} %", flush=True)
    result["equal-skips"] = _equal_skips(rnd, m, samples_10)
    return result


def _equal_skips(rnd: random.Random, m: int, samples: int) -> dict[str, Any]:
    """Why skips are made distinct per identifier: the same N=10 measure, side by side, with targets 1 and 2
    given the same skip (what the paper's independent random skips occasionally produce)."""
    real = maglev.permutation

    def colliding(identifier: int, size: int, max_targets: int) -> tuple[int, int]:
        offset, skip = real(identifier, size, max_targets)
        return offset, real(1, size, max_targets)[1] if identifier in (1, 2) else skip

    out = {}
    for name, perm in (("distinct", real), ("equal", colliding)):
        maglev.permutation = perm  # type: ignore[assignment]
        try:
            sets = [sorted({1, 2} | set(rnd.sample(range(3, 101), 8))) for _ in range(samples)]
            means = [statistics.mean(maglev.disruption(maglev.populate(ids, m, 100),
                                                       maglev.populate([i for i in ids if i != g], m, 100), [g])
                                     for g in ids) for ids in sets]
        finally:
            maglev.permutation = real  # type: ignore[assignment]
        out[name] = {"mean": statistics.mean(means), "worst_set": max(means)}
    print(f"  N= 10 with targets 1 and 2 on the same skip: mean collateral {out['equal']['mean'] * 100:.2f} % "
          f"(distinct skips, same sets: {out['distinct']['mean'] * 100:.2f} %)", flush=True)
    return {"m": m, "sets": samples, **out}


# --- report ----------------------------------------------------------------------------------------

def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu, "nft": nft,
            "python": platform.python_version()}


def table(results: dict[str, Any]) -> str:
    lines = [f"LB benchmarks, {results['machine']['date']}, {results['machine']['cpus']} vCPU "
             f"({results['machine']['cpu']}), kernel {results['machine']['kernel']}, {results['machine']['nft']}",
             "", "| measure | value | goal |", "|---|---|---|"]
    f = results.get("forwarding")
    if f:
        r, m = f["ratios"], f["medians"]
        rounds = len(r["udp_lb1_vs_plain"]["rounds"])
        def ratio(key: str) -> str:
            return f"**{r[key]['median']:.2f}** ({r[key]['min']:.2f}-{r[key]['max']:.2f})"
        lines += [
            f"| UDP 64 B pps, LB / plain routing ({rounds} rounds; plain {m['plain']['udp_pps'] / 1e3:.0f} kpps, "
            f"{m['plain']['udp_ns_per_packet']:.0f} ns CPU/packet; LB {m['lb-1']['udp_ns_per_packet']:.0f} ns) "
            f"| {ratio('udp_lb1_vs_plain')} | >= 0.9 |",
            f"| TCP Gbit/s, LB / plain routing (plain {m['plain']['tcp_gbps']:.1f} Gbit/s) "
            f"| {ratio('tcp_lb1_vs_plain')} | >= 0.9 |",
            f"| of which policy routing: UDP pps, plain + one `ip rule fwmark` (no nftables) / plain "
            f"| {ratio('udp_rule_vs_plain')} | (share of the gap) |",
            f"| of which policy routing: TCP Gbit/s, same | {ratio('tcp_rule_vs_plain')} | (share of the gap) |",
            f"| UDP 64 B pps, LB / (plain + that `ip rule`): the nftables part | {ratio('udp_lb1_vs_rule')} | - |",
        ]
        lines += [f"| {label} | {ratio(name)} | {FAST_GOALS.get(name, '-')} |" for _, name, label in FAST_RATIOS
                  if name in r]
    for mt, u in (results.get("update") or {}).items():
        lines.append(f"| target change at max-targets {mt} (M={u['m']}, 10 targets, "
                     f"{u['buckets_changed']:.0f} buckets) | **{u['total_s']['median'] * 1e3:.1f} ms** "
                     f"({u['total_s']['min'] * 1e3:.1f}-{u['total_s']['max'] * 1e3:.1f}; Maglev "
                     f"{u['render_s'] * 1e3:.1f}, nft {u['nft_s'] * 1e3:.1f}, fast path {u.get('fast_s', 0) * 1e3:.1f}) "
                     f"| - |")
        if "to_fast_path_s" in u:
            t = u["to_fast_path_s"]
            lines.append(f"| same, until the fast path forwards by the new table (Maglev + fast path switch; its first "
                         f"change, writing the spare half, {u['fast_writing_s'] * 1e3:.1f} ms) | "
                         f"**{t['median'] * 1e3:.1f} ms** ({t['min'] * 1e3:.1f}-{t['max'] * 1e3:.1f}) "
                         f"| {'<= 10 ms' if mt == '100' else '<= 1 s' if mt == '10000' else '-'} |")
    for n, d in (results.get("disruption") or {}).items():
        if n == "equal-skips":
            lines.append(f"| same, targets 1 and 2 given one skip (the paper's random skips can collide; {d['sets']} "
                         f"sets) | **{d['equal']['mean'] * 100:.2f} %** (distinct skips on the same sets: "
                         f"{d['distinct']['mean'] * 100:.2f} %) | - |")
            continue
        lines.append(f"| Maglev collateral disruption, 1 of {n} leaves (M={d['m']}, {d['sets']} sets) "
                     f"| **{d['mean'] * 100:.2f} %** (worst set {d['worst_set'] * 100:.2f} %) "
                     f"| paper <= {d['paper'] * 100:.1f} % |")
    lines.append("")
    lines.append("Sender, LB and target share the 2 vCPUs (and other work on the VM); ratios are medians of "
                 "per-round ratios (range). CPU per packet = the sender's CPU time (the kernel forwards in its "
                 "context) / packets delivered; with the sender CPU-bound, its ratios equal the packets/s ones.")
    return "\n".join(lines)


def _sender() -> str:
    out = pathlib.Path(tempfile.mkdtemp(prefix="lb-udpsend-")) / "lb_udpsend"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(ROOT / "bench" / "lb_udpsend.c")], check=True)
    return str(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s, max-targets 100 and 1000 only")
    parser.add_argument("--only", choices=("forwarding", "update", "disruption"), action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("lb_bench: needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    if args.quick:
        args.rounds, args.seconds, args.changes = 2, 1.0, 4
    only = set(args.only or ("forwarding", "update", "disruption"))
    results: dict[str, Any] = {}
    if args.only and RESULTS.exists():  # a partial run updates its sections of the last full results
        results = json.loads(RESULTS.read_text())
    results.update({"machine": _machine(), "settings": vars(args)})
    if "disruption" in only:
        print("Maglev disruption:", flush=True)
        results["disruption"] = bench_disruption(10 if args.quick else 40, 1 if args.quick else 3)
    if "update" in only:
        print("Target change:", flush=True)
        results["update"] = bench_update([100, 1000] if args.quick else [100, 1000, 10000], args.changes)
    if "forwarding" in only:
        print("Forwarding (interleaved rounds):", flush=True)
        results["forwarding"] = bench_forwarding(args.rounds, args.seconds, _sender())
    text = table(results)
    results["table"] = text
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(text)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
