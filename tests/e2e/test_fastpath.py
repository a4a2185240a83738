"""The LB's eBPF fast path in the whole environment: every FE+LB pod has the program attached, its pins on
the bpffs the runtime mounted for the pod, and the e2e traffic is forwarded by it (its flow counters
grow by at least the packets of the connections made), for IPv4 and IPv6."""
from __future__ import annotations

import struct

from meridio.kernel import bpf
from meridio.kernel import netns as netnsmod
from meridio.loadbalancer import fastpath
from meridio.runtime.local.layout import StateLayout, state_root
from tests.e2e.framework import E2E, FAMILIES, VIP1


def _forwarded(pins: object) -> int:
    """Packets the fast path counted over all its flow counters (every CPU)."""
    loaded = bpf.open_pinned(pins, ("flow_stats",))  # type: ignore[arg-type]
    try:
        raw = loaded.maps["flow_stats"].array_values()
        return sum(p for p, _ in struct.iter_unpack("<QQ", raw))
    finally:
        loaded.close()


def test_every_lb_pod_forwards_the_traffic_with_its_fast_path(e2e: E2E) -> None:
    layout = StateLayout(state_root(e2e.env.name))
    pods = e2e.lb_pods("attractor-a")
    assert pods
    pins = {pod: layout.pod_dir(pod) / "bpf" for pod in pods}
    for pod, path in pins.items():
        assert bpf.is_bpffs(path), f"{pod}: no bpffs at {path}"
        assert (path / "prog").exists() and all((path / m).exists() for m in fastpath.MAPS)
        prog = bpf.open_program(path / "prog")
        try:
            ns = e2e.naming.pod_ns(pod)
            links = [line.split(":")[1].strip().split("@")[0] for line in
                     netnsmod.run(ns, ["ip", "-o", "link", "show"]).stdout.splitlines()]
            assert any(prog.id in bpf.tc_attached(name, netns=ns) for name in links), f"{pod}: not attached"
        finally:
            prog.close()
    for family in FAMILIES:
        before = sum(_forwarded(p) for p in pins.values())
        report = e2e.expect_traffic("trench-a", VIP1[family], 4000, 4)
        after = sum(_forwarded(p) for p in pins.values())
        # each TCP connection is at least SYN, ACK, FIN/RST from the client: all through the fast path
        assert after - before >= 3 * 400, f"IPv{family}: fast path forwarded {after - before} ({report['hosts']})"
