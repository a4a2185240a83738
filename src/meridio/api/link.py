"""A target's link to a conduit (``meridio.proxy.v1.Link``): the one type the proxy serves, the TAPA
receives and the tests compare, with its wire conversion both ways."""
from __future__ import annotations

import dataclasses

from meridio.api.pb.meridio.proxy.v1 import link_pb2

__all__ = ["CREDENTIAL_REQUEST", "Link", "link_from_pb", "link_to_pb"]

CREDENTIAL_REQUEST = b"netns\n"
"""What a caller sends on the proxy's credential socket, a descriptor of its network namespace attached
(``SCM_RIGHTS``); the answer is one line, ``ok <credential>`` or ``error <why>``."""


@dataclasses.dataclass(frozen=True)
class Link:
    """A target's link (``interface_name == ""``: not linked)."""

    target_id: str
    interface_name: str = ""
    addresses: tuple[str, ...] = ()
    """The target's conduit addresses with the node prefix length (``172.16.1.6/24``)."""
    gateways: tuple[str, ...] = ()
    """The proxy bridge addresses: next hops of the VIP policy routes."""
    vips: tuple[str, ...] = ()
    mtu: int = 0
    conduit: str = ""
    trench: str = ""
    node: str = ""

    @property
    def connected(self) -> bool:
        return bool(self.interface_name)

    @property
    def ips(self) -> tuple[str, ...]:
        """The conduit addresses without prefix length."""
        return tuple(a.split("/")[0] for a in self.addresses)


def link_from_pb(m: link_pb2.Link) -> Link:
    return Link(m.target_id, m.interface_name, tuple(m.addresses), tuple(m.gateways), tuple(m.vips), m.mtu,
                m.conduit, m.trench, m.node)


def link_to_pb(link: Link) -> link_pb2.Link:
    return link_pb2.Link(target_id=link.target_id, interface_name=link.interface_name,
                         addresses=list(link.addresses), gateways=list(link.gateways), vips=list(link.vips),
                         mtu=link.mtu, conduit=link.conduit, trench=link.trench, node=link.node)
