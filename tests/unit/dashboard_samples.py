"""Hand-made status snapshots and resources for the dashboard's unit tests: one trench ``t`` with an
attractor ``a`` (two FE+LB replicas on segment ``net``), a conduit ``c`` (two proxies) with stream ``s``
(two registered targets, one target pod), and a gateway ``gw`` peering with both FEs over IPv4 and IPv6."""
from __future__ import annotations

import dataclasses
from typing import Any

from meridio.api import resources
from meridio.runtime.local import protocol as proto

FE0, FE1 = "stateless-lb-frontend-a-0", "stateless-lb-frontend-a-1"
ADDRS = {FE0: ("169.254.1.1", "2001:db8:1::1"), FE1: ("169.254.1.2", "2001:db8:1::2")}

OBJS = resources.loads("""
apiVersion: meridio.nordix.org/v1
kind: Trench
metadata: {name: t}
spec: {ip-family: dualstack}
---
apiVersion: meridio.nordix.org/v1
kind: Conduit
metadata: {name: c, labels: {trench: t}}
spec: {type: stateless-lb}
---
apiVersion: meridio.nordix.org/v1
kind: Stream
metadata: {name: s, labels: {trench: t}}
spec: {conduit: c}
---
apiVersion: meridio.nordix.org/v1
kind: Attractor
metadata: {name: a, labels: {trench: t}}
spec:
  replicas: 2
  composites: [c]
  vips: [v4]
  gateways: [gw4]
  interface: {name: ext-vlan0, type: nsm-vlan, nsm-vlan: {vlan-id: 100, base-interface: eth0}}
""")


def pod(name: str, kind: str, **change: Any) -> proto.Pod:
    base = proto.Pod(name=name, kind=kind, node="node-1", trench="t", netns=f"m-pod-{name}", state="Running")
    return dataclasses.replace(base, **change)


def session(neighbor: str, info: str = "Established", bfd: str = "Up") -> proto.Session:
    return proto.Session(name=f"FE_{neighbor}", neighbor=neighbor, state="up" if info == "Established" else "start",
                         info=info, bfd=bfd)


def snapshot(*, sessions: tuple[proto.Session, ...] | None = None, **change: Any) -> proto.Snapshot:
    fes = tuple(pod(n, "stateless-lb-frontend", attractor="a", network="net", addresses=ADDRS[n]) for n in (FE0, FE1))
    snap = proto.Snapshot(
        environment="lab", prefix="m", state_dir="/state",
        pods=(pod("nsp-t", "nsp"), pod("ipam-t", "ipam"), *fes, pod("proxy-c-node-1", "proxy", conduit="c"),
              pod("proxy-c-node-2", "proxy", conduit="c", node="node-2"), pod("target-0", "target", trench="")),
        routers=(proto.Router(name="gw", trench="t", network="net", families=(4, 6), routes={
            "203.0.113.1/32": ("169.254.1.1", "169.254.1.2")},
            sessions=sessions if sessions is not None else tuple(session(a) for n in (FE0, FE1) for a in ADDRS[n])),),
        targets={"target-0": (proto.StreamStatus(status="OPEN", stream="s", conduit="c", trench="t"),)},
        streams={"t": (proto.RegisteredTarget(stream="s", conduit="c", identifier="7", status="ENABLED",
                                              ips=("172.16.0.2/24",)),
                       proto.RegisteredTarget(stream="s", conduit="c", identifier="12", status="ENABLED",
                                              ips=("172.16.0.3/24",)))})
    return dataclasses.replace(snap, **change)


def metrics_text(packets: dict[str, float], *, bytes_per_packet: float = 100.0, stream: str = "s") -> str:
    """An LB pod's Prometheus text with the target hit counters of ``identifier -> packets``."""
    lines = ["# HELP meridio_lb_target_hit_packets_total Packets the LB sent to the target (nft counter)",
             "# TYPE meridio_lb_target_hit_packets_total counter"]
    lines += [f'meridio_lb_target_hit_packets_total{{conduit="c",identifier="{i}",stream="{stream}",trench="t"}} {n}'
              for i, n in packets.items()]
    lines += ["# HELP meridio_lb_target_hit_bytes_total Bytes the LB sent to the target (nft counter)",
              "# TYPE meridio_lb_target_hit_bytes_total counter"]
    lines += [f'meridio_lb_target_hit_bytes_total{{conduit="c",identifier="{i}",stream="{stream}",trench="t"}} '
              f'{n * bytes_per_packet}' for i, n in packets.items()]
    lines += ["# HELP meridio_lb_stream_targets Targets in the stream's Maglev table",
              "# TYPE meridio_lb_stream_targets gauge", f'meridio_lb_stream_targets{{stream="{stream}"}} 2']
    return "\n".join(lines) + "\n"
