"""VIP source routing rules in a real namespace: exactly one table rule and one fallback rule per VIP,
level-triggered (stale rules of a crashed run are removed, other rules are never touched).

Real: the kernel's policy routing in a throwaway namespace. Nothing is faked.
"""
from __future__ import annotations

import ipaddress

from meridio.frontend import viprules
from meridio.kernel import netns as netnsmod

net = ipaddress.ip_network


def rules(ns: str) -> str:
    return netnsmod.run(ns, ["ip", "rule"]).stdout + netnsmod.run(ns, ["ip", "-6", "rule"]).stdout


def test_vip_rules_follow_the_vips_and_leave_foreign_rules_alone(netns) -> None:  # type: ignore[no-untyped-def]
    ns = netns("fe")
    netnsmod.run(ns, ["ip", "rule", "add", "from", "203.0.113.99", "lookup", "4096", "priority", "100"])  # stale
    netnsmod.run(ns, ["ip", "rule", "add", "from", "198.51.100.1", "lookup", "7", "priority", "50"])  # foreign
    vr = viprules.VipRules(4096, netns=ns)

    added, removed = vr.apply([net("203.0.113.10/32"), net("2001:db8:f::10/128")])
    assert len(added) == 4 and {str(r) for r in removed} == {"from 203.0.113.99/32 lookup 4096 priority 100"}
    text = rules(ns)
    for line in ("100:\tfrom 203.0.113.10 lookup 4096", "101:\tfrom 203.0.113.10 lookup 4097",
                 "100:\tfrom 2001:db8:f::10 lookup 4096", "101:\tfrom 2001:db8:f::10 lookup 4097"):
        assert line in text
    assert "203.0.113.99" not in text

    assert vr.apply([net("203.0.113.10/32"), net("2001:db8:f::10/128")]) == (set(), set())
    vr.apply([net("2001:db8:f::10/128")])
    assert "203.0.113.10" not in rules(ns)

    vr.clear()
    text = rules(ns)
    assert "2001:db8:f::10" not in text and "50:\tfrom 198.51.100.1 lookup 7" in text
