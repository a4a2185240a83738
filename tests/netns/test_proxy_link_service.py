"""The proxy's link service from inside target namespaces: Connect, identity, VIPs, Disconnect, release.

Real: NSP, IPAM and proxy processes; link owners are processes inside target namespaces using
:mod:`meridio.api.linkclient`; the kernel state is read with ``ip -j``. Fake: the LB replica's
announcement (:class:`tests.netns.conduit_support.FakeLbAnnouncer`).
"""
from __future__ import annotations

import ipaddress

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for
from tests.netns.conduit_support import (  # noqa: F401
    CONFIG,
    TRENCH_VIP4,
    VIP4,
    VIP6,
    ConduitEnv,
    LinkOwner,
    ProxyPod,
    addresses,
    default_route,
    from_rules,
    links,
    rules,
    settle,
)

pytestmark = pytest.mark.netns

FAMILIES = ["dualstack", "ipv4", "ipv6"]
FLOW_VIPS = {4: VIP4, 6: VIP6}


def setup(conduit_env, ip_family: str = "dualstack", **proxy: str) -> tuple[ConduitEnv, ProxyPod]:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family=ip_family)
    env.add_lb("lb-1")
    mtu = int(proxy.pop("mtu", "1500"))
    px = env.add_proxy("node-1", mtu=mtu, **proxy)
    wait_for(lambda: len(env.lbs["lb-1"].interfaces()) == 1, 10, message="LB link")
    return env, px


def target_state(ns: str, ifname: str = "nsm-0") -> dict[str, object]:
    """What the proxy put into a target namespace: addresses, rules, default routes of the link table."""
    link = links(ns).get(ifname)
    if link is None:
        return {}
    table = 10000 + link["ifindex"]
    return {"addresses": addresses(ns, ifname),
            "rules": {v: from_rules(ns, v, table) for v in (4, 6)},
            "routes": {v: default_route(ns, v, table) for v in (4, 6)}}


@pytest.mark.parametrize("ip_family", FAMILIES)
def test_connect_links_the_callers_namespace_with_address_vips_and_policy_routes(conduit_env,
                                                                                  ip_family: str) -> None:
    env, px = setup(conduit_env, ip_family)
    tgt = env.add_target("tgt-1")
    link = env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    fams = env.families
    bridge = {ipaddress.ip_interface(a) for a in addresses(px.ns, "bridge0")}
    assert link["interface_name"] == "nsm-0" and link["conduit"] == "conduit-a-1" and link["node"] == "node-1"
    assert sorted(link["gateways"]) == sorted(str(b.ip) for b in bridge)
    assert sorted(link["vips"]) == sorted(FLOW_VIPS[v] for v in fams)
    mine = {ipaddress.ip_interface(a) for a in link["addresses"]}
    assert {a.version for a in mine} == set(fams)
    assert all(any(a.network == b.network and a != b for b in bridge) for a in mine)
    state = target_state(tgt)
    assert state["addresses"] == {str(a) for a in mine} | {FLOW_VIPS[v] for v in fams}
    for v in (4, 6):
        assert state["rules"][v] == ({FLOW_VIPS[v]} if v in fams else set())  # type: ignore[index]
        assert state["routes"][v] == [str(b.ip) for b in bridge if b.version == v]  # type: ignore[index]
    wait_for(lambda: [p.get("master") for p in px.ports("pt-").values()] == ["bridge0"], 5, message="port")
    lb = env.lbs["lb-1"]
    for a in mine:
        netnsmod.run(lb.ns, ["ping", f"-{a.version}", "-c1", "-W2", str(a.ip)])


@pytest.mark.parametrize("version", [4, 6])
def test_traffic_from_a_vip_leaves_through_the_proxy_to_the_lb(conduit_env, version: int) -> None:
    env, px = setup(conduit_env)
    tgt = env.add_target("tgt-1")
    link = env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    target_ip = next(a.split("/")[0] for a in link["addresses"] if ipaddress.ip_interface(a).version == version)
    vip = FLOW_VIPS[version].split("/")[0]
    external = {4: "192.0.2.1", 6: "2001:db8:e::1"}[version]
    lb = env.lbs["lb-1"].ns
    # The LB side of the test: an "external" address, and the route back to the VIP via the target.
    netnsmod.run(lb, ["ip", "addr", "add", external, "dev", "lo"])
    netnsmod.run(lb, ["ip", f"-{version}", "route", "add", vip, "via", target_ip])
    netnsmod.run(tgt, ["ping", f"-{version}", "-c2", "-W2", "-I", vip, external])


def test_connect_again_from_the_same_namespace_returns_the_same_link(conduit_env) -> None:
    env, px = setup(conduit_env)
    tgt = env.add_target("tgt-1")
    owner = env.link_owner(tgt)
    first = owner.connect(px.socket, "target-1", "nsm-0")
    index = links(tgt)["nsm-0"]["ifindex"]
    assert owner.connect(px.socket, "target-1", "nsm-0") == first
    assert links(tgt)["nsm-0"]["ifindex"] == index and len(px.ports("pt-")) == 1


def test_a_credential_links_only_the_namespace_of_the_process_that_obtained_it(conduit_env) -> None:
    env, px = setup(conduit_env)
    ns_a, ns_b = env.add_target("tgt-a"), env.add_target("tgt-b")
    a, b = env.link_owner(ns_a), env.link_owner(ns_b)
    token = a.call(op="credential", socket=px.socket)["value"]
    # b presents a's credential: the link lands in a's namespace, never in b's
    reply = b.call(op="connect_with", socket=px.socket, target_id="target-a", ifname="nsm-0", token=token)
    assert reply["ok"], reply
    assert "nsm-0" in links(ns_a) and "nsm-0" not in links(ns_b)
    again = b.call(op="connect_with", socket=px.socket, target_id="target-b", ifname="nsm-0", token=token)
    assert again["code"] == "UNAUTHENTICATED" and "credential" in again["error"]
    forged = b.call(op="connect_with", socket=px.socket, target_id="target-b", ifname="nsm-0", token="x" * 32)
    assert forged["code"] == "UNAUTHENTICATED"
    # b cannot take over or remove a's link by naming a's target id
    steal = b.call(op="connect", socket=px.socket, target_id="target-a", ifname="nsm-0")
    assert steal["code"] == "PERMISSION_DENIED" and "target_id" in steal["error"]
    remove = b.disconnect(px.socket, "target-a")
    assert remove["code"] == "PERMISSION_DENIED"
    assert "nsm-0" in links(ns_a) and "nsm-0" not in links(ns_b)


@pytest.mark.parametrize("target_id,ifname,code,field", [
    ("", "nsm-0", "INVALID_ARGUMENT", "target_id"),
    ("bad id", "nsm-0", "INVALID_ARGUMENT", "target_id"),
    ("target-1", "a-much-too-long-name", "INVALID_ARGUMENT", "interface_name"),
    ("target-1", "lo", "FAILED_PRECONDITION", "interface_name"),
], ids=["empty-id", "space-in-id", "long-ifname", "ifname-taken"])
def test_bad_connect_requests_are_refused_naming_the_field(conduit_env, target_id: str, ifname: str, code: str,
                                                           field: str) -> None:
    env, px = setup(conduit_env)
    tgt = env.add_target("tgt-1")
    reply = env.link_owner(tgt).call(op="connect", socket=px.socket, target_id=target_id, ifname=ifname)
    assert reply["code"] == code and field in reply["error"], reply
    assert set(links(tgt)) == {"lo"} and px.ports("pt-") == {}
    assert px.proc is not None and px.proc.poll() is None


def test_a_vip_added_to_a_flow_at_runtime_appears_on_the_target_and_goes_again(conduit_env) -> None:
    env, px = setup(conduit_env)
    tgt = env.add_target("tgt-1")
    env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    extra = "203.0.113.2/32"
    added = CONFIG.replace("vips: [vip-a-1-v4, vip-a-1-v6]\n    priority: 1\n    stream: stream-a-i",
                           "vips: [vip-a-1-v4, vip-a-1-v6, vip-a-2-v4]\n    priority: 1\n    stream: stream-a-i")
    added = added.replace("  - {name: vip-a-9-v4", f"  - {{name: vip-a-2-v4, address: {extra}, trench: trench-a}}\n"
                                                    "  - {name: vip-a-9-v4")
    env.write_config(added)
    wait_for(lambda: extra in target_state(tgt)["addresses"] and target_state(tgt)["rules"][4] == {VIP4, extra},
             10, message="the new VIP on the target")
    wait_for(lambda: extra in from_rules(px.ns, 4, 1), 10, message="the new VIP's egress rule on the proxy")
    env.write_config(CONFIG)
    wait_for(lambda: extra not in target_state(tgt)["addresses"] and target_state(tgt)["rules"][4] == {VIP4},
             10, message="the VIP gone from the target")
    assert TRENCH_VIP4 not in target_state(tgt)["addresses"]


def test_disconnect_removes_the_link_and_releases_the_address_only_after_the_delay(conduit_env) -> None:
    env, px = setup(conduit_env, release_delay="2s")
    ns_a, ns_b = env.add_target("tgt-a"), env.add_target("tgt-b")
    a, b = env.link_owner(ns_a), env.link_owner(ns_b)
    first = a.connect(px.socket, "target-a", "nsm-0")
    assert a.disconnect(px.socket, "target-a")["ok"]
    assert set(links(ns_a)) == {"lo"} and px.ports("pt-") == {}
    assert target_state(ns_a) == {}
    assert all(str(r["table"]) in ("local", "main", "default") for v in (4, 6) for r in rules(ns_a, v))
    # within the delay the address is still held: another target gets a different one ...
    other = b.connect(px.socket, "target-b", "nsm-0")
    assert set(other["addresses"]).isdisjoint(first["addresses"])
    # ... and the same target coming back gets its own address again
    assert a.connect(px.socket, "target-a", "nsm-0")["addresses"] == first["addresses"]
    assert a.disconnect(px.socket, "target-a")["ok"]
    assert b.disconnect(px.socket, "target-b")["ok"]
    wait_for(lambda: "addressesReleased" in px.output() and px.output().count("addressesReleased") >= 2, 10,
             message="both releases after the delay")
    # once released, the address is handed out again (first fit)
    ns_c = env.add_target("tgt-c")
    assert env.link_owner(ns_c).connect(px.socket, "target-c", "nsm-0")["addresses"] == first["addresses"]


def test_a_deleted_target_namespace_has_its_link_reclaimed(conduit_env) -> None:
    env, px = setup(conduit_env, release_delay="1s")
    tgt = env.add_target("tgt-1")
    owner = env.link_owner(tgt)
    first = owner.connect(px.socket, "target-1", "nsm-0")
    owner.kill()
    netnsmod.remove(tgt)
    wait_for(lambda: px.ports("pt-") == {}, 10, message="the proxy port gone with the namespace")
    wait_for(lambda: "addressesReleased" in px.output(), 10, message="address released after the delay")
    ns2 = env.add_target("tgt-2")
    assert env.link_owner(ns2).connect(px.socket, "target-2", "nsm-0")["addresses"] == first["addresses"]


def test_a_link_whose_owner_died_is_reclaimed_after_the_orphan_timeout(conduit_env) -> None:
    env, px = setup(conduit_env, orphan_timeout="1s")
    tgt = env.add_target("tgt-1")
    owner = env.link_owner(tgt)
    owner.connect(px.socket, "target-1", "nsm-0")
    owner.kill()  # the namespace stays (the "pod" lives on without its TAPA)
    wait_for(lambda: px.ports("pt-") == {} and "nsm-0" not in links(tgt), 10, message="orphan reclaimed")
    assert all(str(r["table"]) in ("local", "main", "default") for v in (4, 6) for r in rules(tgt, v))


def test_a_restarted_owner_adopts_its_link_before_the_orphan_timeout(conduit_env) -> None:
    env, px = setup(conduit_env, orphan_timeout="3s")
    tgt = env.add_target("tgt-1")
    owner = env.link_owner(tgt)
    first = owner.connect(px.socket, "target-1", "nsm-0")
    index = links(tgt)["nsm-0"]["ifindex"]
    owner.kill()
    again = env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    assert again == first and links(tgt)["nsm-0"]["ifindex"] == index
    settle(4.0)
    assert links(tgt)["nsm-0"]["ifindex"] == index and len(px.ports("pt-")) == 1


def test_the_configured_mtu_is_on_the_bridge_and_both_ends_of_every_link(conduit_env) -> None:
    env, px = setup(conduit_env, mtu="1400")
    tgt = env.add_target("tgt-1")
    link = env.link_owner(tgt).connect(px.socket, "target-1", "nsm-0")
    assert link["mtu"] == 1400
    lb = env.lbs["lb-1"]
    mtus = {n: v["mtu"] for n, v in links(px.ns).items() if n != "lo"}
    mtus.update({f"lb:{n}": v["mtu"] for n, v in lb.interfaces().items()})
    mtus["target:nsm-0"] = links(tgt)["nsm-0"]["mtu"]
    assert len(mtus) == 5 and set(mtus.values()) == {1400}, mtus
