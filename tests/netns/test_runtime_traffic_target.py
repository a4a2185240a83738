"""The traffic tool against the real example target, each in its own namespace (IPv4 and IPv6).

Real: two namespaces and a veth, ``meridio example-target`` answering on a VIP (on the target's
``lo``), and the traffic module run with ``ip netns exec`` in the generator namespace, as
``meridio traffic`` does.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meridio.kernel import netns as netnsmod

pytestmark = pytest.mark.netns


@pytest.fixture
def pair(netns, procs):  # type: ignore[no-untyped-def]
    tg, tgt = netns("tg"), netns("tgt")
    subprocess.run(["ip", "-n", tg, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", tgt],
                   check=True)
    for ns, v4, v6 in ((tg, "192.0.2.1/24", "2001:db8:ff::1/64"), (tgt, "192.0.2.2/24", "2001:db8:ff::2/64")):
        netnsmod.run(ns, ["ip", "addr", "add", v4, "dev", "eth0"])
        netnsmod.run(ns, ["ip", "addr", "add", v6, "dev", "eth0", "nodad"])
        netnsmod.run(ns, ["ip", "link", "set", "eth0", "up"])
    netnsmod.run(tgt, ["ip", "addr", "add", "203.0.113.1/32", "dev", "lo"])
    netnsmod.run(tgt, ["ip", "addr", "add", "2001:db8:a1::1/128", "dev", "lo"])
    netnsmod.run(tg, ["ip", "route", "add", "203.0.113.1/32", "via", "192.0.2.2"])
    netnsmod.run(tg, ["ip", "-6", "route", "add", "2001:db8:a1::1/128", "via", "2001:db8:ff::2"])
    proc = procs.meridio("example-target", "--name", "target-x", ns=tgt, name="example-target")
    yield tg
    procs.stop(proc)


def _traffic(tg: str, *args: str) -> dict:  # type: ignore[type-arg]
    done = netnsmod.run(tg, [sys.executable, "-m", "meridio.runtime.local.traffic", *args], timeout=120)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("vip", ["203.0.113.1", "2001:db8:a1::1"], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize(("port", "udp"), [("4000", False), ("4003", True)], ids=["tcp", "udp"])
def test_400_connections_all_reach_the_example_target_and_none_is_lost(pair, vip, port, udp) -> None:  # type: ignore[no-untyped-def]
    args = ["--address", vip, "--port", port, "--nconn", "400", "--timeout", "30"] + (["--udp"] if udp else [])
    for _ in range(50):  # the target may still be starting
        report = _traffic(pair, *args, "--nconn", "1", "--timeout", "1")
        if report["hosts"]:
            break
    report = _traffic(pair, *args)
    assert report["hosts"] == {"target-x": 400} and report["lost"] == 0 and report["connections"] == 400


def test_ctraffic_exchanges_messages_with_the_echoing_target(pair) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):
        if _traffic(pair, "--address", "203.0.113.1", "--port", "4000", "--nconn", "1", "--timeout", "1")["hosts"]:
            break
    report = _traffic(pair, "--address", "203.0.113.1", "--port", "4000", "--nconn", "20", "--duration", "1.5",
                      "--rate", "10")
    assert report["hosts"] == {"target-x": 20} and report["lost_messages"] == 0 and report["resets"] == 0 \
        and report["timeouts"] == 0
    assert report["messages"]["target-x"] == report["received"] >= 20 * 10
