"""The proxy and its LB side: bridge0, a link into every announced LB replica, egress over all of them.

Real: NSP, IPAM and proxy processes, namespaces, veths, bridge, rules and routes. Fake: the LB replicas'
LOADBALANCER announcements come from :class:`tests.netns.conduit_support.FakeLbAnnouncer` processes.
"""
from __future__ import annotations

import ipaddress

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for
from tests.integration.metrics_support import scrape, value
from tests.netns.conduit_support import (  # noqa: F401
    TRENCH_VIP4,
    VIP4,
    VIP6,
    ConduitEnv,
    addresses,
    default_route,
    from_rules,
    links,
)

pytestmark = pytest.mark.netns


def lb_end_ips(env: ConduitEnv, name: str, version: int) -> list[str]:
    lb = env.lbs[name]
    return [a.split("/")[0] for ifname in lb.interfaces() for a in addresses(lb.ns, ifname)
            if ipaddress.ip_interface(a).version == version]


@pytest.mark.parametrize("ip_family", ["dualstack", "ipv4", "ipv6"])
def test_proxy_links_every_lb_replica_and_routes_egress_over_all_of_them(conduit_env, ip_family: str) -> None:
    env = conduit_env(ip_family=ip_family)
    env.add_lb("lb-1")
    env.add_lb("lb-2")
    px = env.add_proxy("node-1")
    wait_for(lambda: all(len(env.lbs[n].interfaces()) == 1 for n in ("lb-1", "lb-2")), 10,
             message="a link in each LB namespace")
    bridge = {ipaddress.ip_interface(a) for a in addresses(px.ns, "bridge0")}
    assert {b.version for b in bridge} == set(env.families)
    wait_for(lambda: [p.get("master") for p in px.ports("pl-").values()] == ["bridge0", "bridge0"], 10,
             message="two LB ports enslaved to bridge0")
    for version in env.families:
        subnet = next(b.network for b in bridge if b.version == version)
        hops = wait_for(lambda v=version: (h := sorted(lb_end_ips(env, "lb-1", v) + lb_end_ips(env, "lb-2", v)))
                        and len(h) == 2 and h, 10, message=f"IPv{version} addresses on both LB ends")
        assert len(hops) == 2 and all(ipaddress.ip_address(h) in subnet for h in hops)
        wait_for(lambda v=version, h=hops: default_route(px.ns, v, 1) == sorted(h), 10, message=f"IPv{version} ECMP")
        bridge_ip = next(str(b.ip) for b in bridge if b.version == version)
        for name in ("lb-1", "lb-2"):
            netnsmod.run(env.lbs[name].ns, ["ping", f"-{version}", "-c1", "-W2", bridge_ip])
    expected = {4: {VIP4, TRENCH_VIP4}, 6: {VIP6}}
    for version in env.families:
        wait_for(lambda v=version: from_rules(px.ns, v, 1) == expected[v], 10, message="from-VIP rules")
    for name in ("lb-1", "lb-2"):
        ifname, link = next(iter(env.lbs[name].interfaces().items()))
        assert len(ifname) <= 15 and link["mtu"] == 1500 and link.get("operstate") == "UP"


def test_lb_that_stops_announcing_loses_its_link_and_next_hop_and_gets_them_back(conduit_env) -> None:
    env = conduit_env(ip_family="dualstack")
    env.add_lb("lb-1")
    env.add_lb("lb-2")
    px = env.add_proxy("node-1")
    both = wait_for(lambda: len(h := default_route(px.ns, 4, 1)) == 2 and h, 10, message="two next hops")
    env.lbs["lb-2"].announcer.stop()
    wait_for(lambda: env.lbs["lb-2"].interfaces() == {} and len(px.ports("pl-")) == 1, 10,
             message="lb-2's link removed")
    for v in (4, 6):
        wait_for(lambda v=v: default_route(px.ns, v, 1) == lb_end_ips(env, "lb-1", v), 10,
                 message=f"IPv{v} egress via lb-1 only")
    env.lbs["lb-2"].announcer.start()
    wait_for(lambda: default_route(px.ns, 4, 1) == both, 10, message="lb-2 back with the same address")


def test_readiness_follows_the_lb_links(conduit_env) -> None:
    from tests.netns.conduit_support import _health_serving
    env = conduit_env(ip_family="ipv4")
    px = env.add_proxy("node-1")
    address = f"unix:{px.socket}"
    assert not _health_serving(address, ("Readiness",))
    env.add_lb("lb-1")
    wait_for(lambda: _health_serving(address, ("Readiness",)), 10, message="Readiness SERVING with an LB link")
    env.lbs["lb-1"].announcer.stop()
    wait_for(lambda: not _health_serving(address, ("Readiness",)), 10, message="Readiness NOT_SERVING again")


def _neighbour_mac(ns: str, ip: str) -> str | None:
    out = netnsmod.run(ns, ["ip", "neigh", "show", ip]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def _link_mac(ns: str, ifname: str) -> str:
    return netnsmod.run(ns, ["cat", f"/sys/class/net/{ifname}/address"]).stdout.strip()


def test_a_recreated_lb_link_leaves_no_neighbour_entry_with_the_old_mac(conduit_env) -> None:
    # The far end of a re-created link has a new MAC but the same IPAM address: a neighbour entry of the
    # old link in the proxy would blackhole egress to that LB until it expired (about 30 s).
    # lb-2 keeps bridge0's carrier up while lb-1 is away (losing carrier would flush the entry anyway).
    env = conduit_env(ip_family="ipv4")
    env.add_lb("lb-1")
    env.add_lb("lb-2")
    px = env.add_proxy("node-1")
    ip = wait_for(lambda: lb_end_ips(env, "lb-1", 4), 10, message="lb-1 linked")[0]
    wait_for(lambda: lb_end_ips(env, "lb-2", 4), 10, message="lb-2 linked")
    netnsmod.run(px.ns, ["ping", "-c1", "-W2", ip])
    old_mac = _link_mac(env.lbs["lb-1"].ns, next(iter(env.lbs["lb-1"].interfaces())))
    assert _neighbour_mac(px.ns, ip) == old_mac
    env.lbs["lb-1"].announcer.stop()
    wait_for(lambda: env.lbs["lb-1"].interfaces() == {}, 10, message="lb-1's link removed")
    env.lbs["lb-1"].announcer.start()
    wait_for(lambda: lb_end_ips(env, "lb-1", 4) == [ip], 10, message="lb-1 back with the same address")
    new_mac = _link_mac(env.lbs["lb-1"].ns, next(iter(env.lbs["lb-1"].interfaces())))
    assert new_mac != old_mac
    assert _neighbour_mac(px.ns, ip) in (None, new_mac)
    netnsmod.run(px.ns, ["ping", "-c1", "-W2", ip])


def test_a_scrape_shows_the_lb_links_and_the_counters_of_bridge0_and_the_ports(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family="ipv4")
    env.add_lb("lb-1")
    env.add_lb("lb-2")
    px = env.add_proxy("node-1", extra=("--metrics-enabled", "true", "--metrics-port", "2227"))
    ids = {"trench": px.env.trench, "conduit": px.env.conduit}
    wait_for(lambda: value(scrape(2227, ns=px.ns), "meridio_proxy_lb_links", **ids) == 2, 15,
             message="two LB links in the metrics")
    (bridge_ip,) = px.bridge_ips()
    netnsmod.run(env.lbs["lb-1"].ns, ["ping", "-4", "-c3", "-i0.2", "-W2", bridge_ip])
    samples = scrape(2227, ns=px.ns)
    assert value(samples, "meridio_proxy_lb_peers", **ids) == 2
    assert value(samples, "meridio_proxy_egress_ready", **ids) == 1
    assert value(samples, "meridio_proxy_target_links", **ids) == 0
    assert value(samples, "meridio_interface_receive_packets_total", **ids, interface="bridge0") >= 3
    ports = {dict(labels)["interface"] for (name, labels), _ in samples.items()
             if name == "meridio_interface_receive_packets_total"}
    assert ports == {"bridge0", *px.ports("pl-")}
    assert value(samples, "meridio_proxy_reconcile_duration_seconds_count", **ids, input="lbTargets") >= 1
