"""The kernel adapters on the real kernel, in throwaway namespaces: libnftables binding and netlink helpers.

Real: nftables (libnftables.so.1 via ctypes), rtnetlink (pyroute2), /proc/sys. Nothing is faked.
"""
from __future__ import annotations

import socket

import pytest

from meridio.kernel import netlink, nftables
from meridio.kernel.netlink import Netlink, RuleInfo


def test_nft_context_acts_in_the_namespace_it_was_opened_for(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("nft")
    with nftables.Nft(netns=ns) as nft:
        nft.apply(["add table inet probe"])
        assert nft.table_exists("inet", "probe")
    with nftables.Nft() as own:
        assert not own.table_exists("inet", "probe")


def test_failed_nft_transaction_leaves_the_previous_ruleset_intact(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("nft")
    with nftables.Nft(netns=ns) as nft:
        nft.apply(["add table inet t", "add chain inet t c", "add rule inet t c udp dport 7000 counter accept"])
        before = nft.run("list table inet t")
        # The kernel accepts the first commands of the batch, then refuses to delete a chain still
        # jumped to (EBUSY): the whole batch must be rolled back.
        with pytest.raises(nftables.NftError, match="Device or resource busy"):
            nft.apply(["flush chain inet t c", "add rule inet t c tcp dport 80 counter drop",
                       "add set inet t s { type ipv4_addr; }", "add chain inet t d",
                       "add rule inet t c jump d", "delete chain inet t d"])
        assert nft.run("list table inet t") == before
        assert "udp dport 7000" in before and "tcp dport 80" not in before


def test_nft_check_evaluates_without_applying(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("nft")
    with nftables.Nft(netns=ns) as nft:
        nft.check("add table inet dry")
        assert not nft.table_exists("inet", "dry")
        with pytest.raises(nftables.NftError):
            nft.check("add table inet dry; add chain inet dry c; add rule inet dry c th dport 99999 drop")


def test_nft_lists_json_objects_without_metainfo(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("nft")
    with nftables.Nft(netns=ns) as nft:
        nft.apply(["add table inet t", "add counter inet t hits"])
        objects = nft.list_json("table inet t")
    assert [next(iter(o)) for o in objects] == ["table", "counter"]


def test_routes_and_rules_are_idempotent_and_an_unconnected_gateway_is_reported(netns) -> None:  # type: ignore[no-untyped-def]
    a, b = netns("a"), netns("b")
    with Netlink(a) as nl:
        nl.add_veth("va", "vb", peer_netns=b, peer_name="eth0", mtu=1400)
        nl.set_link("va", up=True)
        nl.add_address("va", "169.254.101.254/24")
        nl.add_address("va", "169.254.101.254/24")
        nl.add_address("va", "2001:db8:101::fe/64")
        with pytest.raises(netlink.NetlinkError) as info:
            nl.replace_route("default", gateway="169.254.102.1", table=5001)
        assert netlink.is_unreachable(info.value)
        nl.replace_route("default", gateway="169.254.101.1", table=5001)
        nl.replace_route("default", gateway="2001:db8:101::1", table=5001)
        for _ in range(2):
            nl.add_rule(priority=90, table=5001, family=socket.AF_INET, fwmark=5001)
        nl.add_rule(priority=100, table=4096, family=socket.AF_INET6, src="2001:db8:f::10/128")
        rules = [r for r in nl.rules() if r.priority in (90, 100)]
        assert rules == [RuleInfo(socket.AF_INET, 90, 5001, 5001),
                         RuleInfo(socket.AF_INET6, 100, 4096, None, "2001:db8:f::10/128")]
        assert {(r.dst, r.gateway) for r in nl.routes(table=5001)} == {("0.0.0.0/0", "169.254.101.1"),
                                                                      ("::/0", "2001:db8:101::1")}
        nl.delete_rule(rules[0])
        nl.delete_rule(rules[0])
        nl.delete_route("default", table=5001, family=socket.AF_INET)
        assert [r.dst for r in nl.routes(table=5001)] == ["::/0"]
        assert sorted(nl.addresses("va")) == ["169.254.101.254/24", "2001:db8:101::fe/64"]
    with Netlink(b) as nl:
        assert nl.link_names() == ["lo", "eth0"]


def test_sysctls_are_written_in_the_named_namespace_only(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("s")
    host_value = netlink.get_sysctl("net.ipv4.ip_forward")
    netlink.set_sysctl("net.ipv4.ip_forward", 1, netns=ns)
    assert netlink.get_sysctl("net.ipv4.ip_forward", netns=ns) == "1"
    assert netlink.get_sysctl("net.ipv4.ip_forward") == host_value
