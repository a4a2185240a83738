"""A restarted proxy (SIGTERM or SIGKILL) finds its bridge, links, addresses, rules and routes and keeps
them: nothing is recreated, and traffic to and from a target keeps flowing while it is down.

Real: NSP, IPAM and proxy processes, the kernel, ``ping`` through the data path. Fake: the LB replicas'
announcements (:class:`tests.netns.conduit_support.FakeLbAnnouncer`).
"""
from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
from typing import Any

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for
from tests.netns.conduit_support import (
    CONFIG,
    VIP4,
    VIP6,
    ConduitEnv,
    addresses,
    default_route,
    from_rules,
    links,
    settle,
)
from tests.netns.test_proxy_link_service import target_state

pytestmark = pytest.mark.netns

EXTERNAL = {4: "192.0.2.1", 6: "2001:db8:e::1"}


def snapshot(env: ConduitEnv, tgt: str) -> dict[str, Any]:
    px = env.proxies["node-1"]
    proxy_links = links(px.ns)
    return {
        "bridge": (proxy_links["bridge0"]["address"], proxy_links["bridge0"]["ifindex"], addresses(px.ns, "bridge0")),
        "ports": {n: link["ifindex"] for n, link in proxy_links.items() if n.startswith(("pl-", "pt-"))},
        "lb_ends": {lb.name: {n: (link["ifindex"], addresses(lb.ns, n)) for n, link in lb.interfaces().items()}
                    for lb in env.lbs.values()},
        "target": (links(tgt)["nsm-0"]["ifindex"], target_state(tgt)),
        "egress": {v: (default_route(px.ns, v, 1), from_rules(px.ns, v, 1)) for v in (4, 6)},
    }


def start_ping(ns: str, version: int, dst: str, *source: str) -> subprocess.Popen[str]:
    argv = ["ping", f"-{version}", "-n", "-i", "0.02", "-c", "200", "-W", "1", *source, dst]
    return subprocess.Popen(netnsmod.exec_argv(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def received(ping: subprocess.Popen[str]) -> tuple[int, int]:
    out, _ = ping.communicate(timeout=30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restarted_proxy_keeps_links_routes_and_traffic(conduit_env, sig: int) -> None:
    env = conduit_env(ip_family="dualstack")
    for name in ("lb-1", "lb-2"):
        env.add_lb(name)
    px = env.add_proxy("node-1")
    tgt = env.add_target("tgt-1")
    owner = env.link_owner(tgt)
    link = owner.connect(px.socket, "target-1", "nsm-0")
    wait_for(lambda: all(len(default_route(px.ns, v, 1)) == 2 for v in (4, 6)), 10, message="ECMP over 2 LBs")
    before = snapshot(env, tgt)
    lb = env.lbs["lb-1"].ns
    pings = []
    for a in link["addresses"]:
        iface = ipaddress.ip_interface(a)
        pings.append(start_ping(lb, iface.version, str(iface.ip)))      # ingress direction: LB -> target
    for v, vip in ((4, VIP4), (6, VIP6)):                               # egress direction: VIP -> LB (ECMP)
        vip_ip = vip.split("/")[0]
        target_ip = next(str(ipaddress.ip_interface(a).ip) for a in link["addresses"]
                         if ipaddress.ip_interface(a).version == v)
        for name in ("lb-1", "lb-2"):
            ns = env.lbs[name].ns
            netnsmod.run(ns, ["ip", "addr", "add", EXTERNAL[v], "dev", "lo"])
            netnsmod.run(ns, ["ip", f"-{v}", "route", "add", vip_ip, "via", target_ip])
        pings.append(start_ping(tgt, v, EXTERNAL[v], "-I", vip_ip))
    settle(0.5)
    px.stop(sig)
    px.start()
    settle(1.0)
    assert snapshot(env, tgt) == before
    for ping in pings:
        sent, got = received(ping)
        assert got == sent, f"{sent - got} of {sent} pings lost across the restart"
    # still in charge of what it found: a runtime VIP change reaches the target, Disconnect works
    extra = "203.0.113.2/32"
    env.write_config(CONFIG.replace("vips: [vip-a-1-v4, vip-a-1-v6]\n    priority: 1\n    stream: stream-a-i",
                                    "vips: [vip-a-1-v4, vip-a-1-v6, vip-a-2-v4]\n    priority: 1\n"
                                    "    stream: stream-a-i").replace(
        "  - {name: vip-a-9-v4", f"  - {{name: vip-a-2-v4, address: {extra}, trench: trench-a}}\n"
                                 "  - {name: vip-a-9-v4"))
    wait_for(lambda: extra in target_state(tgt)["addresses"], 10, message="a runtime VIP after the restart")
    assert owner.disconnect(px.socket, "target-1")["ok"]
    assert "nsm-0" not in links(tgt)


def test_a_proxy_restarted_while_ipam_is_down_keeps_everything(conduit_env) -> None:
    env = conduit_env(ip_family="dualstack")
    env.add_lb("lb-1")
    px = env.add_proxy("node-1")
    tgt = env.add_target("tgt-1")
    env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    wait_for(lambda: all(len(default_route(px.ns, v, 1)) == 1 for v in (4, 6)), 10, message="egress route")
    before = snapshot(env, tgt)
    assert env.ipam_proc is not None
    env.procs.stop(env.ipam_proc)
    px.stop()
    px.proc = env.procs.meridio(*px.args, ns=px.ns, name="proxy-node-1")
    wait_for(lambda: "proxyStarted" in px.output(), 15, message="proxy started without IPAM")
    assert "bridgeAddressesPending" in px.output()
    settle(1.5)
    assert snapshot(env, tgt) == before
