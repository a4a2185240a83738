"""Policy routing to targets (reference §3.4): ``ip rule fwmark X lookup X`` + ``default via <target IP>``
in table X, per IP family of the target, X = identifier + the stream's offset.

Thin adapter over :mod:`meridio.kernel.netlink`. A route whose gateway is on no connected subnet yet
(the link to the target's proxy is not there) fails with ENETUNREACH: :meth:`TargetRouting.add`
then undoes what it did and returns False, and the caller keeps the target *pending*. Before a route
is (re)created, stale neighbour entries of the target IP are removed (a new target may reuse an IP).
What is ours on restart: rules at our priority whose fwmark equals their table, from ``first_table``.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping

from meridio.common import log as logmod
from meridio.kernel import netlink
from meridio.kernel.netlink import Netlink, RuleInfo

__all__ = ["TargetRouting", "Address"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _family(ip: Address) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


class TargetRouting:
    def __init__(self, nl: Netlink, *, rule_priority: int, first_table: int,
                 log: logmod.Logger = logmod.null) -> None:
        self._nl = nl
        self.rule_priority = rule_priority
        self.first_table = first_table
        self._log = log

    def _ours(self, rule: RuleInfo) -> bool:
        return (rule.priority == self.rule_priority and rule.fwmark is not None and rule.fwmark == rule.table
                and rule.table >= self.first_table and rule.src is None)

    def installed(self) -> dict[int, frozenset[Address]]:
        """fwmark -> gateways routed in its table (a gateway counts only if its family's rule is there)."""
        ruled = {(int(r.fwmark), r.family) for r in self._nl.rules() if self._ours(r) and r.fwmark is not None}
        gateways: dict[int, set[Address]] = {m: set() for m, _ in ruled}
        for route in self._nl.routes():
            if (route.table, route.family) in ruled and route.dst in ("0.0.0.0/0", "::/0") and route.gateway:
                gateways[route.table].add(ipaddress.ip_address(route.gateway))
        return {m: frozenset(g) for m, g in gateways.items()}

    def stray_tables(self, known: Iterable[int]) -> list[int]:
        """Tables >= first_table holding a default route but no rule of ours (left by a crash)."""
        ruled = set(self.installed()) | set(known)
        return sorted({r.table for r in self._nl.routes() if r.table >= self.first_table
                       and r.table not in ruled and r.table not in (253, 254, 255)
                       and r.dst in ("0.0.0.0/0", "::/0")})

    def add(self, fwmark: int, ips: Iterable[Address], current: Mapping[int, frozenset[Address]]) -> bool:
        """Route ``fwmark`` to ``ips``; False (nothing left behind) if a gateway is unreachable."""
        ips = list(ips)
        have = current.get(fwmark, frozenset())
        if have == frozenset(ips):
            return True
        try:
            for ip in ips:
                if ip not in have:
                    self._nl.delete_neighbours(str(ip))
                    self._nl.replace_route("default", gateway=str(ip), table=fwmark)
            for family in sorted({_family(ip) for ip in ips}):
                self._nl.add_rule(priority=self.rule_priority, table=fwmark, family=family, fwmark=fwmark)
        except netlink.NetlinkError as exc:
            if not netlink.is_unreachable(exc):
                raise
            self._log.debug("targetUnreachable", fwmark=fwmark, ips=[str(i) for i in ips], error=str(exc))
            if fwmark not in current:
                self.remove(fwmark)
            return False
        for family in ({socket.AF_INET, socket.AF_INET6} - {_family(ip) for ip in ips}):
            self._remove_family(fwmark, family)
        return True

    def _remove_family(self, fwmark: int, family: int) -> None:
        self._nl.delete_rule(RuleInfo(family, self.rule_priority, fwmark, fwmark))
        self._nl.delete_route("default", table=fwmark, family=family)

    def remove(self, fwmark: int) -> None:
        """Remove the rules and routes of ``fwmark`` (both families; absent ones are fine)."""
        for family in (socket.AF_INET, socket.AF_INET6):
            self._remove_family(fwmark, family)

    def remove_table(self, table: int) -> None:
        for family in (socket.AF_INET, socket.AF_INET6):
            self._nl.delete_route("default", table=table, family=family)
