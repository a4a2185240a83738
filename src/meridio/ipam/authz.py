"""Who may allocate and release in this IPAM (pure; called once per Allocate/Release).

With mutual TLS the caller is the verified :class:`~meridio.common.identity.Identity` of its certificate:

1. only a proxy or a frontend allocates and releases;
2. its identity names this IPAM's trench;
3. its identity names a node, and the request is for that node (a proxy takes addresses of its own
   node's subnet only; which nodes exist is checked against the configuration elsewhere).

A rule broken is ``PERMISSION_DENIED`` and nothing changes.
"""
from __future__ import annotations

import dataclasses

from meridio.common import identity as identitymod
from meridio.common.bounds import quote
from meridio.common.grpcutil import PermissionDenied
from meridio.ipam.registry import ChildRequest

__all__ = ["ALLOCATORS", "Policy"]

ALLOCATORS = frozenset({identitymod.Component.PROXY, identitymod.Component.FRONTEND})


@dataclasses.dataclass(frozen=True)
class Policy:
    trench: str
    """The trench this IPAM serves."""

    def check(self, caller: identitymod.Identity, child: ChildRequest) -> None:
        who = f"{caller.component.value} {caller.pod}"  # identity segments: at most 63 characters
        if caller.component not in ALLOCATORS:
            raise PermissionDenied(f"{who} may not allocate addresses (only a proxy or a frontend)")
        if caller.trench != self.trench:
            raise PermissionDenied(f"{who} belongs to trench {caller.trench or ''!r}, this IPAM "
                                   f"serves {self.trench!r}")
        if caller.node is None:
            raise PermissionDenied(f"{who}: its identity names no node")
        if child.node != caller.node:
            raise PermissionDenied(f"child.subnet.node {quote(child.node)}: {who} runs on node "
                                   f"{caller.node!r}")
