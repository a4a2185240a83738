"""The cluster network's address plan and the environment's ``cluster`` section (pure)."""
from __future__ import annotations

import ipaddress

import pytest

from meridio.runtime.local import cluster
from meridio.runtime.local import environment as envmod


def _env(**extra: object) -> envmod.Environment:
    return envmod.parse({"name": "lab", "nodes": ["node-1", "node-2", "node-3"], **extra})


def test_node_n_gets_address_n_on_the_underlay_and_the_nth_pod_subnets() -> None:
    plan = cluster.plan(_env())
    n2 = plan.node("node-2")
    assert n2.index == 2
    assert [str(a) for a in n2.underlay] == ["198.18.0.2/24", "fd00:198:18::2/64"]
    assert [str(s) for s in n2.pod_subnets] == ["10.244.2.0/24", "fd00:10:244:2::/64"]
    assert [str(g) for g in n2.gateways] == ["10.244.2.1/24", "fd00:10:244:2::1/64"]
    assert [str(a) for a in n2.pod_addresses(7)] == ["10.244.2.7/24", "fd00:10:244:2::7/64"]


def test_a_node_routes_every_other_nodes_pod_subnets_via_their_underlay_address() -> None:
    routes = [(str(dst), str(via)) for dst, via in cluster.plan(_env()).routes("node-1")]
    assert routes == [("10.244.2.0/24", "198.18.0.2"), ("fd00:10:244:2::/64", "fd00:198:18::2"),
                      ("10.244.3.0/24", "198.18.0.3"), ("fd00:10:244:3::/64", "fd00:198:18::3")]


def test_the_plan_is_the_same_for_the_same_environment() -> None:
    assert cluster.plan(_env()) == cluster.plan(_env())


@pytest.mark.parametrize("host", [0, 1, 255], ids=["network", "node-gateway", "broadcast"])
def test_a_pod_host_index_outside_the_pod_range_is_refused(host: int) -> None:
    with pytest.raises(ValueError, match="outside 2..254"):
        cluster.plan(_env()).node("node-1").pod_addresses(host)


def test_the_default_cluster_ranges_collide_with_nothing_of_the_default_environment() -> None:
    env = envmod.load_default()
    c = env.cluster
    used = [env.ipam_ipv4, env.ipam_ipv6, ipaddress.ip_network("2001:db8::/32"), ipaddress.ip_network("192.0.2.0/24"),
            ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"),
            ipaddress.ip_network("169.254.0.0/16")]
    for mine in (c.pod_ipv4, c.pod_ipv6, c.underlay_ipv4, c.underlay_ipv6):
        assert not any(mine.version == u.version and mine.overlaps(u) for u in used), mine


@pytest.mark.parametrize(("cluster_section", "message"), [
    ({"pod-network": {"ipv4": "172.16.0.0/16"}},
     "cluster.pod-network.ipv4: 172.16.0.0/16 overlaps ipam.ipv4 (172.16.0.0/16)"),
    ({"underlay": {"ipv6": "fd00:10:244:5::/64"}},
     "cluster.pod-network.ipv6: fd00:10:244::/48 overlaps cluster.underlay.ipv6 (fd00:10:244:5::/64)"),
    ({"pod-network": {"ipv4": "10.244.0.0/24"}},
     "cluster.pod-network.ipv4: 10.244.0.0/24 is too small (the prefix length must be at most 23)"),
    ({"pod-network": {"ipv4": "10.244.0.0/23"}},
     "cluster.pod-network.ipv4: 10.244.0.0/23 holds 1 node subnets (/24), not 3"),
    ({"underlay": {"ipv4": "198.18.0.0/30"}},
     "cluster.underlay.ipv4: 198.18.0.0/30 has no address for each of the 3 nodes"),
    ({"pod-network": {"ipv6": "10.0.0.0/8"}}, "cluster.pod-network.ipv6: '10.0.0.0/8' is not an IPv6 prefix"),
    ({"overlay": {}}, "cluster.overlay: unknown field (allowed: pod-network, underlay, mtu, conduit-mtu)"),
    ({"mtu": 1500, "conduit-mtu": 1500},
     "cluster.conduit-mtu: 1500 does not fit a VXLAN conduit over the pod network (at most mtu - 50 = 1450)"),
    ({"mtu": 1300}, "cluster.mtu: 1300 leaves a conduit MTU below IPv6's 1280 (mtu must be at least 1330)"),
], ids=["pods-on-ipam", "underlay-in-pods", "too-small", "too-few-nodes", "underlay-full", "wrong-family",
        "unknown-field", "conduit-too-big", "underlay-too-small"])
def test_a_bad_cluster_section_is_refused_naming_the_field_and_rule(cluster_section: dict[str, object],
                                                                   message: str) -> None:
    with pytest.raises(envmod.EnvironmentSpecError) as err:
        _env(cluster=cluster_section)
    assert str(err.value) == message


def test_a_pods_hosts_file_names_itself_and_each_service() -> None:
    own = [ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_interface("fd00:10:244:1::5/64")]
    text = cluster.hosts_file("target-a-0", own, {
        "nsp-service-t": (ipaddress.ip_address("10.244.1.2"), ipaddress.ip_address("fd00:10:244:1::2")),
        "ipam-service-t": (ipaddress.ip_address("10.244.1.3"),)})
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.244.1.5\ttarget-a-0", "fd00:10:244:1::5\ttarget-a-0",
        "10.244.1.3\tipam-service-t", "10.244.1.2\tnsp-service-t", "fd00:10:244:1::2\tnsp-service-t"]


@pytest.mark.parametrize(("section", "conduit_mtu"), [
    ({}, 1500), ({"mtu": 1500}, 1450), ({"mtu": 1500, "conduit-mtu": 1400}, 1400), ({"conduit-mtu": 8950}, 8950)],
    ids=["jumbo-underlay", "1500-underlay-minus-vxlan", "set", "set-jumbo"])
def test_the_conduit_mtu_is_1500_unless_set_or_a_vxlan_over_the_underlay_needs_less(
        section: dict[str, object], conduit_mtu: int) -> None:
    assert _env(cluster=section).cluster.effective_conduit_mtu == conduit_mtu
