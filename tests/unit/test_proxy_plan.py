"""The proxy's pure core: names and aliases, LB peers, egress, target interface state, deltas."""
from __future__ import annotations

import pytest

from meridio.api import model
from meridio.proxy import names, plan

TRENCH = model.Trench("trench-a")
CONDUIT = model.Conduit("conduit-a", TRENCH)


def lb_target(ident: str, *, netns: str = "lbns", ifprefix: str = "cond-a", conduit: model.Conduit = CONDUIT,
              status: model.TargetStatus = model.TargetStatus.ENABLED,
              type: model.TargetType = model.TargetType.LOADBALANCER) -> model.Target:
    return model.Target.make(context={"identifier": ident, "netns": netns, "ifprefix": ifprefix}, status=status,
                             type=type, stream=model.Stream("", conduit))


# --- names ---------------------------------------------------------------------------------------

def test_port_names_are_stable_short_and_distinct() -> None:
    a, b = names.target_port_name("target-a-1"), names.target_port_name("target-a-2")
    assert a == names.target_port_name("target-a-1")
    assert a != b and len(a) <= names.IFNAMSIZ and names.is_target_port(a) and not names.is_lb_port(a)
    lb = names.lb_port_name("lb-1")
    assert names.is_lb_port(lb) and len(lb) <= names.IFNAMSIZ and lb != names.target_port_name("lb-1")


@pytest.mark.parametrize("prefix", ["c", "conduit-a-", "cond.a_b"], ids=["short", "ten", "dots"])
def test_lb_far_name_keeps_the_prefix_and_fits_ifnamsiz(prefix: str) -> None:
    name = names.lb_far_name(prefix, trench="t", conduit="c", node="node-1")
    assert name.startswith(prefix + "-") and len(name) <= names.IFNAMSIZ


def test_lb_far_name_differs_per_node_and_per_attempt() -> None:
    one = names.lb_far_name("cond-a", trench="t", conduit="c", node="node-1")
    assert one != names.lb_far_name("cond-a", trench="t", conduit="c", node="node-2")
    assert one != names.lb_far_name("cond-a", trench="t", conduit="c", node="node-1", attempt=1)


@pytest.mark.parametrize("alias", [
    names.LbPortAlias("lb-a-1"),
    names.TargetPortAlias("target-a-7f9c", 4026532999, 12345, 987654),
    names.FarEndAlias("trench-a", "conduit-a", "node-1"),
], ids=["lb", "target", "far-end"])
def test_aliases_round_trip(alias: names.Alias) -> None:
    text = alias.render()
    assert len(text) < 256
    assert names.parse_alias(text) == alias


@pytest.mark.parametrize("text", [None, "", "eth0 uplink", "meridio:x:y", "meridio:t:a:b:c:d", "meridio:l:",
                                  "meridio:p:a/b", "other:l:x"],
                         ids=["none", "empty", "foreign", "kind", "not-int", "empty-id", "two-parts", "root"])
def test_foreign_or_broken_aliases_are_not_ours(text: str | None) -> None:
    assert names.parse_alias(text) is None


def test_longest_target_alias_fits_the_kernel_limit() -> None:
    alias = names.TargetPortAlias("a" * 160, 2**64 - 1, 4194304, 2**64 - 1).render()
    assert len(alias) <= 255


@pytest.mark.parametrize("value", ["", "-a", "a-", "a b", "a:b", "a/b", "x" * 161, "é"],
                         ids=["empty", "lead-dash", "trail-dash", "space", "colon", "slash", "too-long", "unicode"])
def test_bad_target_ids_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(names.InvalidName, match="^target_id: must be"):
        names.check_target_id(value)


@pytest.mark.parametrize("value", ["", ".", "..", "a" * 16, "nsm 0", "nsm/0", "nsm:0"],
                         ids=["empty", "dot", "dotdot", "too-long", "space", "slash", "colon"])
def test_bad_interface_names_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(names.InvalidName, match="^interface_name: must be"):
        names.check_interface_name(value)


def test_good_names_pass_unchanged() -> None:
    assert names.check_target_id("target-a-5d8f.x_1") == "target-a-5d8f.x_1"
    assert names.check_interface_name("nsm-0") == "nsm-0"
    assert names.ipam_child("target-a") == "target-a-src"


# --- LB peers ------------------------------------------------------------------------------------

def test_lb_peers_are_the_enabled_loadbalancers_of_this_conduit() -> None:
    other_conduit = model.Conduit("conduit-b", TRENCH)
    other_trench = model.Conduit("conduit-a", model.Trench("trench-b"))
    targets = [
        lb_target("lb-1"), lb_target("lb-2", netns="lb2ns"),
        lb_target("lb-3", status=model.TargetStatus.DISABLED),
        lb_target("lb-4", type=model.TargetType.FRONTEND),
        lb_target("lb-5", conduit=other_conduit), lb_target("lb-6", conduit=other_trench),
        model.Target.make(context={"identifier": "7"}, stream=model.Stream("s", CONDUIT)),
    ]
    peers, problems = plan.lb_peers(targets, trench="trench-a", conduit="conduit-a")
    assert peers == {"lb-1": plan.LbPeer("lb-1", "lbns", "cond-a"), "lb-2": plan.LbPeer("lb-2", "lb2ns", "cond-a")}
    assert problems == ()


@pytest.mark.parametrize("ctx,field", [
    ({"identifier": "lb-1", "ifprefix": "cond-a"}, "context.netns"),
    ({"identifier": "lb-1", "netns": "../etc", "ifprefix": "cond-a"}, "context.netns"),
    ({"identifier": "lb-1", "netns": "lbns", "ifprefix": "much-too-long"}, "context.ifprefix"),
    ({"netns": "lbns", "ifprefix": "cond-a"}, "context.identifier"),
], ids=["no-netns", "path-netns", "long-prefix", "no-identifier"])
def test_unusable_lb_announcements_are_reported_not_linked(ctx: dict[str, str], field: str) -> None:
    t = model.Target.make(context=ctx, type=model.TargetType.LOADBALANCER, stream=model.Stream("", CONDUIT))
    peers, problems = plan.lb_peers([t], trench="trench-a", conduit="conduit-a")
    assert peers == {}
    assert len(problems) == 1 and problems[0].error.startswith(field + ":")


# --- egress --------------------------------------------------------------------------------------

def test_egress_has_a_rule_per_vip_and_a_multipath_route_per_family() -> None:
    vips = [model.Vip("v1", "203.0.113.1/32"), model.Vip("v2", "2001:db8::1/128"), model.Vip("v3", "198.51.100.7")]
    e = plan.egress(vips, ["172.16.1.9/24", "172.16.1.3/24", "fd00:0:0:1::3/64"], (4, 6))
    assert e.rules == {"203.0.113.1/32", "2001:db8::1/128", "198.51.100.7/32"}
    assert e.nexthops == {4: ("172.16.1.3", "172.16.1.9"), 6: ("fd00:0:0:1::3",)}


def test_egress_of_a_single_family_ignores_the_other() -> None:
    vips = [model.Vip("v1", "203.0.113.1/32"), model.Vip("v2", "2001:db8::1/128")]
    e = plan.egress(vips, ["172.16.1.3/24", "fd00::3/64"], (6,))
    assert e.rules == {"2001:db8::1/128"} and e.nexthops == {6: ("fd00::3",)}


def test_egress_without_lb_replicas_has_no_next_hops() -> None:
    assert plan.egress([], [], (4, 6)).nexthops == {4: (), 6: ()}


def test_malformed_vip_addresses_are_skipped() -> None:
    assert plan.egress([model.Vip("bad", "not-an-ip")], [], (4,)).rules == frozenset()


# --- target interface ----------------------------------------------------------------------------

def flow(name: str, *addresses: str, conduit: model.Conduit = CONDUIT) -> model.Flow:
    return model.Flow(name, model.Stream("s", conduit), vips=tuple(model.Vip(a, a) for a in addresses))


def test_conduit_vips_are_the_union_over_all_flows() -> None:
    flows = [flow("f1", "203.0.113.1/32", "2001:db8::1/128"), flow("f2", "203.0.113.1/32", "198.51.100.0/24")]
    assert plan.conduit_vips(flows) == {"203.0.113.1/32", "2001:db8::1/128", "198.51.100.0/24"}


def test_vips_overlapping_a_bridge_subnet_are_not_put_on_targets() -> None:
    vips = ["203.0.113.1/32", "172.16.1.77/32", "172.16.0.0/16", "fd00::/8", "2001:db8::1/128"]
    got = plan.target_vips(vips, ["172.16.1.1/24", "fd00:0:0:1::1/64"], (4, 6))
    assert got == ("203.0.113.1/32", "2001:db8::1/128")


def test_vips_of_a_family_not_served_are_not_put_on_targets() -> None:
    assert plan.target_vips(["203.0.113.1/32", "2001:db8::1/128"], [], (4,)) == ("203.0.113.1/32",)


@pytest.mark.parametrize("prefix,address", [("203.0.113.1/32", "203.0.113.1/32"),
                                            ("203.0.113.0/24", "203.0.113.0/32"),
                                            ("2001:db8::1/128", "2001:db8::1/128"),
                                            ("2001:db8:1::/64", "2001:db8:1::/128")],
                         ids=["v4-host", "v4-range", "v6-host", "v6-range"])
def test_a_vip_becomes_a_host_address_on_the_target(prefix: str, address: str) -> None:
    assert plan.vip_host_address(prefix) == address


def test_target_iface_holds_conduit_addresses_vips_rules_and_gateways() -> None:
    s = plan.target_iface(["172.16.1.6/24", "fd00:0:0:1:0::6/64"], ["203.0.113.1/32", "2001:db8::/64"],
                          ["172.16.1.1", "fd00:0:0:1::1/64"])
    assert s.addresses == {"172.16.1.6/24", "fd00:0:0:1::6/64", "203.0.113.1/32", "2001:db8::/128"}
    assert s.rules == {"203.0.113.1/32", "2001:db8::/64"}
    assert s.gateways == {"172.16.1.1", "fd00:0:0:1::1"}


def test_target_iface_skips_vips_of_a_family_without_gateway() -> None:
    s = plan.target_iface(["172.16.1.6/24"], ["203.0.113.1/32", "2001:db8::1/128"], ["172.16.1.1"])
    assert s.rules == {"203.0.113.1/32"} and "2001:db8::1/128" not in s.addresses


def test_delta_lists_what_to_add_and_what_to_remove() -> None:
    d = plan.delta({"a", "b"}, {"b", "c"})
    assert d.add == {"c"} and d.remove == {"a"} and d
    assert not plan.delta({"a"}, {"a"})


@pytest.mark.parametrize("text,fams", [("ipv4", (4,)), ("IPv6", (6,)), ("dualstack", (4, 6))],
                         ids=["v4", "v6-case", "dual"])
def test_ip_family_setting_maps_to_versions(text: str, fams: tuple[int, ...]) -> None:
    assert plan.families(text) == fams


def test_unknown_ip_family_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="^ip_family: must be one of"):
        plan.families("ipv5")
