#!/usr/bin/env python3
"""Forwarding through a cross-node (VXLAN) conduit vs a same-node (veth) conduit, side by side in one run
(run as root from the repository root):

    .venv/bin/python bench/conduit_vxlan.py [--rounds 10] [--seconds 1]

Two beds of the same shape, client -> LB namespace -> conduit -> proxy bridge0 -> target (VIP on lo):

- ``veth``: the LB's end of the conduit is a veth whose other end is a bridge0 port (what the proxy
  makes for a replica on its node);
- ``vxlan``: the LB and the proxy are pods on two nodes of the local runtime's cluster network
  (:func:`meridio.runtime.local.topology.ensure_cluster`: pod ``eth0`` -> node ``cni0`` -> underlay ->
  the other node), and the conduit is a VXLAN pair between their pod addresses made with the same kernel
  call the components use (:meth:`meridio.kernel.netlink.Netlink.add_vxlan`), the proxy's end on bridge0.

The LB namespace routes the VIP to the target with a plain route (no nftables: the difference measured is
the conduit's, the LB data path is the same in both). Figures, in interleaved rounds (the order alternates):
64-byte-payload UDP packets/s delivered to the target (``bench/lb_udpsend.c``, 16 flows; an nft counter in
the target), the sender's CPU ns per delivered packet, and TCP Gbit/s (iperf2, one stream). Ratios
vxlan / veth per round; medians and ranges. Writes ``bench/results/conduit_vxlan.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import lb_bench  # noqa: E402

from meridio.kernel import netns as netnsmod  # noqa: E402
from meridio.kernel.netlink import Netlink  # noqa: E402
from meridio.runtime.local import cluster, topology  # noqa: E402
from meridio.runtime.local import environment as envmod  # noqa: E402
from meridio.runtime.local.layout import Naming  # noqa: E402
from tests.conftest import Procs  # noqa: E402

VIP = "203.0.113.10"
UDP_PORT, TCP_PORT = 7000, 5201
CLIENT, LB_EXT = "192.0.2.1", "192.0.2.2"
LB_END, BRIDGE, TARGET = "172.16.1.2", "172.16.1.1", "172.16.1.5"
RESULTS = ROOT / "bench" / "results" / "conduit_vxlan.json"


class Bed:
    """One client -> LB -> conduit -> proxy -> target path; ``mode`` is ``veth`` or ``vxlan``."""

    def __init__(self, mode: str, prefix: str, procs: Procs, sender: str) -> None:
        self.mode, self.procs, self.sender = mode, procs, sender
        self.naming = Naming(prefix)
        self.client, self.lb, self.proxy, self.target = (self.naming.pod_ns(n) for n in ("client", "lb", "px", "t"))
        for ns in (self.client, self.lb, self.proxy, self.target):
            topology.ensure_namespace(ns, {"net.ipv6.conf.all.accept_dad": "0"})
        for ns in (self.lb, self.proxy):
            topology.ensure_namespace(ns, topology.POD_SYSCTLS)
        self._external()
        self._conduit()
        self._target()
        netnsmod.run(self.target, ["nft", "-f", "-"], input="\n".join([
            "add table inet bench", "add counter inet bench rx",
            "add chain inet bench pre { type filter hook prerouting priority -400; policy accept; }",
            f'add rule inet bench pre udp dport {UDP_PORT} counter name "rx"']) + "\n")
        procs.start(["iperf", "-s", "-B", VIP, "-p", str(TCP_PORT)], ns=self.target, name=f"iperf-{mode}")

    def _external(self) -> None:
        with Netlink(self.lb) as nl:
            nl.add_veth("ext0", "cext0", peer_netns=self.client, peer_name="ext0")
            nl.add_address("ext0", f"{LB_EXT}/24")
            nl.set_link("ext0", up=True)
        with Netlink(self.client) as nl:
            nl.add_address("ext0", f"{CLIENT}/24")
            nl.set_link("ext0", up=True)
            nl.replace_route("default", gateway=LB_EXT)

    def _conduit(self) -> None:
        with Netlink(self.proxy) as nl:
            nl.add_bridge("bridge0")
            nl.add_address("bridge0", f"{BRIDGE}/24")
            nl.set_link("bridge0", up=True)
        if self.mode == "veth":
            with Netlink(self.proxy) as nl:
                nl.add_veth("pl-lb", "cond-tmp", peer_netns=self.lb, peer_name="cond-a-1")
                nl.set_link("pl-lb", master="bridge0", up=True)
        else:
            env = envmod.parse({"name": "bench", "nodes": ["node-1", "node-2"]})
            plan = cluster.plan(env)
            topology.ensure_cluster(env, self.naming)
            ends = {}
            for ns, node in ((self.lb, "node-1"), (self.proxy, "node-2")):
                n = plan.node(node)
                topology.ensure_pod_network(topology.pod_link(self.naming, node, ns, n.pod_addresses(2),
                                                              mtu=env.cluster.mtu), ())
                with Netlink(ns) as nl:
                    nl.replace_route(str(env.cluster.pod_ipv4), gateway=str(n.gateways[0].ip))
                ends[ns] = str(n.pod_addresses(2)[0].ip)
            with Netlink(self.lb) as nl:
                nl.add_vxlan("cond-a-1", vni=4242, local=ends[self.lb], remote=ends[self.proxy], mtu=1500)
            with Netlink(self.proxy) as nl:
                nl.add_vxlan("pl-lb", vni=4242, local=ends[self.proxy], remote=ends[self.lb], mtu=1500)
                nl.set_link("pl-lb", master="bridge0", up=True)
        with Netlink(self.lb) as nl:
            nl.add_address("cond-a-1", f"{LB_END}/24")
            nl.set_link("cond-a-1", up=True)
            nl.replace_route(f"{VIP}/32", gateway=TARGET)

    def _target(self) -> None:
        with Netlink(self.proxy) as nl:
            nl.add_veth("pt-t", "tmp-t", peer_netns=self.target, peer_name="eth0")
            nl.set_link("pt-t", master="bridge0", up=True)
        with Netlink(self.target) as nl:
            nl.add_address("eth0", f"{TARGET}/24")
            nl.add_address("lo", f"{VIP}/32")
            nl.set_link("eth0", up=True)
            nl.replace_route("default", gateway=LB_END)

    def _rx(self) -> int:
        out = netnsmod.run(self.target, ["nft", "-j", "list", "counter", "inet", "bench", "rx"]).stdout
        return int(json.loads(out)["nftables"][1]["counter"]["packets"])

    def udp(self, seconds: float) -> tuple[float, float]:
        """(delivered packets/s, sender CPU ns per delivered packet)."""
        before = self._rx()
        _, cpu = lb_bench._run_with_cpu(netnsmod.exec_argv(self.client, [
            self.sender, VIP, str(UDP_PORT), "64", str(seconds), "16"]))
        time.sleep(0.2)
        delivered = self._rx() - before
        return delivered / seconds, cpu / max(1, delivered) * 1e9

    def tcp(self, seconds: float) -> float:
        out = netnsmod.run(self.client, ["iperf", "-c", VIP, "-p", str(TCP_PORT), "-t", str(seconds), "-y", "C"],
                           timeout=seconds + 30).stdout.strip().splitlines()
        return int(out[-1].split(",")[-1]) / 1e9

    def close(self) -> None:
        topology.remove_namespaces(self.naming)


def run(rounds: int, seconds: float) -> dict[str, Any]:
    procs = Procs(pathlib.Path(tempfile.mkdtemp(prefix="conduit-vxlan-")))
    tag = os.urandom(2).hex()
    beds: dict[str, Bed] = {}
    raw: dict[str, dict[str, list[float]]] = {m: {"udp_pps": [], "udp_ns_per_packet": [], "tcp_gbps": []}
                                              for m in ("veth", "vxlan")}
    try:
        sender = lb_bench._sender()
        for mode in ("veth", "vxlan"):
            beds[mode] = Bed(mode, f"b{mode[1]}{tag}", procs, sender)
        time.sleep(0.5)
        for r in range(rounds):
            order = ("veth", "vxlan") if r % 2 == 0 else ("vxlan", "veth")
            udp = {m: beds[m].udp(seconds) for m in order}
            tcp = {m: beds[m].tcp(seconds) for m in order}
            for m in order:
                raw[m]["udp_pps"].append(udp[m][0])
                raw[m]["udp_ns_per_packet"].append(udp[m][1])
                raw[m]["tcp_gbps"].append(tcp[m])
                print(f"  round {r + 1}/{rounds} {m:5s} udp {udp[m][0] / 1e3:7.1f} kpps ({udp[m][1]:6.0f} ns CPU/packet)"
                      f"  tcp {tcp[m]:6.2f} Gbit/s", flush=True)
    finally:
        procs.cleanup()
        for bed in beds.values():
            bed.close()
    ratios = {key: [a / b for a, b in zip(raw["vxlan"][key], raw["veth"][key])]
              for key in ("udp_pps", "udp_ns_per_packet", "tcp_gbps")}
    return {"machine": lb_bench._machine(), "settings": {"rounds": rounds, "seconds": seconds}, "raw": raw,
            "medians": {m: {k: statistics.median(v) for k, v in raw[m].items()} for m in raw},
            "ratios_vxlan_vs_veth": {k: {**lb_bench._median_range(v), "rounds": v} for k, v in ratios.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("conduit_vxlan: needs root (network namespaces)", file=sys.stderr)
        return 1
    results = run(args.rounds, args.seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    m, r = results["medians"], results["ratios_vxlan_vs_veth"]
    print(f"\nmedians: veth {m['veth']['udp_pps'] / 1e3:.1f} kpps, {m['veth']['tcp_gbps']:.2f} Gbit/s; "
          f"vxlan {m['vxlan']['udp_pps'] / 1e3:.1f} kpps, {m['vxlan']['tcp_gbps']:.2f} Gbit/s")
    for key, v in r.items():
        print(f"vxlan/veth {key}: median {v['median']:.2f} (range {v['min']:.2f}-{v['max']:.2f})")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
