"""VIP source routing in the frontend's namespace (Meridio's ``setVIPRules``), level-triggered.

For each VIP: ``ip rule from <vip> lookup <table> priority 100`` (the routes BIRD learned from the
gateways, ECMP) and ``ip rule from <vip> lookup <table+1> priority 101`` (the blackhole fallback BIRD keeps
in table 4097 when drop-if-no-peer is on), so egress from the targets with a VIP source leaves through a
gateway or is dropped, never through the namespace's main table.

:func:`desired_rules` is pure; :class:`VipRules` reads the rules present (ours are recognised by priority
and table), and adds/removes the difference, so rules left by a crashed run are corrected on start.
Uses :class:`meridio.kernel.netlink.Netlink` in the caller's namespace (the frontend runs inside the FE
namespace); synchronous, so asyncio callers use ``asyncio.to_thread``.
"""
from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable

from meridio.bird.birdconf import IPNetwork
from meridio.common import log as logmod
from meridio.kernel import netlink

__all__ = ["PRIORITY", "FALLBACK_PRIORITY", "Rule", "desired_rules", "VipRules"]

PRIORITY = 100
FALLBACK_PRIORITY = 101


@dataclasses.dataclass(frozen=True, order=True)
class Rule:
    family: int
    src: str
    src_len: int
    table: int
    priority: int

    def __str__(self) -> str:
        return f"from {self.src}/{self.src_len} lookup {self.table} priority {self.priority}"


def desired_rules(vips: Iterable[IPNetwork], table_id: int) -> set[Rule]:
    out: set[Rule] = set()
    for vip in vips:
        family = socket.AF_INET if vip.version == 4 else socket.AF_INET6
        src = str(vip.network_address)
        out.add(Rule(family, src, vip.prefixlen, table_id, PRIORITY))
        out.add(Rule(family, src, vip.prefixlen, table_id + 1, FALLBACK_PRIORITY))
    return out


class VipRules:
    """The frontend's VIP rules in the current network namespace."""

    def __init__(self, table_id: int = 4096, *, netns: str | None = None, log: logmod.Logger = logmod.null) -> None:
        self.table_id = table_id
        self.netns = netns
        """``None``: the caller's namespace (the daemon); a name: that namespace (tests)."""
        self.log = log

    def _ours(self, rule: Rule) -> bool:
        return (rule.priority, rule.table) in ((PRIORITY, self.table_id), (FALLBACK_PRIORITY, self.table_id + 1))

    def current(self) -> set[Rule]:
        with netlink.Netlink(self.netns) as nl:
            found = {_from_info(r) for r in nl.rules() if r.src is not None and r.fwmark is None}
        return {r for r in found if self._ours(r)}

    def apply(self, vips: Iterable[IPNetwork]) -> tuple[set[Rule], set[Rule]]:
        """Make the rules exactly those of ``vips``; returns ``(added, removed)``."""
        want = desired_rules(vips, self.table_id)
        have = self.current()
        added, removed = want - have, have - want
        with netlink.Netlink(self.netns) as nl:
            for rule in sorted(removed):
                nl.delete_rule(netlink.RuleInfo(rule.family, rule.priority, rule.table, None,
                                                f"{rule.src}/{rule.src_len}"))
                self.log.info("vipRuleRemoved", rule=str(rule))
            for rule in sorted(added):
                nl.add_rule(priority=rule.priority, table=rule.table, family=rule.family,
                            src=f"{rule.src}/{rule.src_len}")
                self.log.info("vipRuleAdded", rule=str(rule))
        return added, removed

    def clear(self) -> set[Rule]:
        """Remove every VIP rule of ours (shutdown)."""
        return self.apply(())[1]


def _from_info(info: netlink.RuleInfo) -> Rule:
    assert info.src is not None
    address, _, length = info.src.partition("/")
    return Rule(info.family, address, int(length), info.table, info.priority)
