"""Gateway supervision (Meridio's frontend ``Monitor``), sans-IO.

:func:`assess` turns what BIRD reports (``show protocols "NBR-*"``, ``show bfd sessions``) into the health
of each configured gateway and the frontend's *connectivity*:

- a BGP gateway is up iff its protocol is ``up`` and ``Established``;
- a static gateway is up iff its protocol is ``up`` and, when it uses BFD, BFD's session to the gateway
  address on the external interface is ``Up``;
- connectivity needs at least one gateway, and one up gateway in *every* IP family that has gateways.

:class:`Tracker` keeps the last assessment, counts consecutive query failures (more than
``max_errors`` in a row count as no connectivity, as ``NFE_MAX_SESSION_ERRORS``) and returns the
changes worth a log line or an action.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from meridio.bird.birdc import BfdSession, ProtocolInfo
from meridio.bird.birdconf import BirdGateway, Family, GatewayProtocol

__all__ = ["Reason", "GatewayHealth", "Assessment", "Change", "assess", "Tracker", "needs_bfd_sessions"]


class Reason(str, enum.Enum):
    ESTABLISHED = "established"
    UP = "up"
    PROTOCOL_MISSING = "protocolMissing"
    PROTOCOL_NOT_UP = "protocolNotUp"
    BGP_NOT_ESTABLISHED = "bgpNotEstablished"
    BFD_DOWN = "bfdDown"
    NO_GATEWAYS = "noGateways"
    FAMILY_WITHOUT_GATEWAY = "familyWithoutGateway"
    QUERY_ERRORS = "birdQueryErrors"
    CONNECTED = "connected"


@dataclasses.dataclass(frozen=True)
class GatewayHealth:
    name: str
    family: Family
    up: bool
    reason: Reason
    detail: str = ""
    """BIRD's own words (the protocol's info column, e.g. ``Active  Socket: Connection refused``)."""


@dataclasses.dataclass(frozen=True)
class Assessment:
    gateways: tuple[GatewayHealth, ...]
    connectivity: bool
    reason: Reason
    detail: str = ""


def needs_bfd_sessions(gateways: Sequence[BirdGateway]) -> bool:
    """Whether :func:`assess` needs ``show bfd sessions`` (only static+BFD gateways do)."""
    return any(g.protocol is GatewayProtocol.STATIC and g.bfd is not None for g in gateways)


def assess(gateways: Sequence[BirdGateway], protocols: Sequence[ProtocolInfo],
           bfd_sessions: Sequence[BfdSession], interface: str) -> Assessment:
    by_name = {p.name: p for p in protocols}
    health = tuple(_gateway(g, by_name.get(g.protocol_name), bfd_sessions, interface) for g in gateways)
    return _connectivity(health)


def _gateway(gw: BirdGateway, proto: ProtocolInfo | None, sessions: Sequence[BfdSession],
             interface: str) -> GatewayHealth:
    def health(up: bool, reason: Reason, detail: str = "") -> GatewayHealth:
        return GatewayHealth(gw.name, gw.family, up, reason, " ".join(detail.split()))

    if proto is None:
        return health(False, Reason.PROTOCOL_MISSING)
    if proto.state != "up":
        return health(False, Reason.PROTOCOL_NOT_UP, f"{proto.state} {proto.info}")
    if gw.protocol is GatewayProtocol.BGP:
        if "Established" not in proto.info:
            return health(False, Reason.BGP_NOT_ESTABLISHED, proto.info)
        return health(True, Reason.ESTABLISHED)
    if gw.bfd is not None:
        session = next((s for s in sessions if s.address == str(gw.address) and s.interface == interface), None)
        if session is None or session.state != "Up":
            return health(False, Reason.BFD_DOWN, session.state if session else "no session")
    return health(True, Reason.UP)


def _connectivity(health: tuple[GatewayHealth, ...]) -> Assessment:
    if not health:
        return Assessment(health, False, Reason.NO_GATEWAYS)
    for fam in Family:
        members = [h for h in health if h.family is fam]
        if members and not any(h.up for h in members):
            return Assessment(health, False, Reason.FAMILY_WITHOUT_GATEWAY, f"no {fam.channel} gateway up")
    return Assessment(health, True, Reason.CONNECTED)


@dataclasses.dataclass(frozen=True)
class Change:
    """Something that changed: a gateway (``gateway`` set) or the connectivity (``gateway`` empty)."""

    event: str
    """``gatewayUp``, ``gatewayDown``, ``connectivityUp``, ``connectivityDown``."""
    reason: str
    gateway: str = ""
    detail: str = ""


class Tracker:
    """The last known assessment, with query-failure counting. Pure: feed it, read the changes."""

    def __init__(self, max_errors: int = 5) -> None:
        self.max_errors = max_errors
        self.errors = 0
        self.connectivity = False
        self._gateways: dict[str, GatewayHealth] = {}

    def observe(self, assessment: Assessment) -> list[Change]:
        self.errors = 0
        changes: list[Change] = []
        current = {g.name: g for g in assessment.gateways}
        for name, g in current.items():
            before = self._gateways.get(name)
            if before is None or before.up != g.up:
                if before is not None or g.up:
                    changes.append(Change("gatewayUp" if g.up else "gatewayDown", g.reason.value, name, g.detail))
        self._gateways = current
        changes += self._set_connectivity(assessment.connectivity, assessment.reason.value, assessment.detail)
        return changes

    def observe_error(self, error: str) -> list[Change]:
        """A query to BIRD failed; after more than ``max_errors`` in a row, connectivity is lost."""
        self.errors += 1
        if self.errors > self.max_errors:
            return self._set_connectivity(False, Reason.QUERY_ERRORS.value, error)
        return []

    def reset(self, reason: str) -> list[Change]:
        """BIRD (re)started: nothing is known to be up any more."""
        self._gateways = {}
        self.errors = 0
        return self._set_connectivity(False, reason, "")

    def _set_connectivity(self, up: bool, reason: str, detail: str) -> list[Change]:
        if up == self.connectivity:
            return []
        self.connectivity = up
        return [Change("connectivityUp" if up else "connectivityDown", reason, detail=detail)]
