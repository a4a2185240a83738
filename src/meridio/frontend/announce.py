"""When the frontend may announce its VIPs, and what it registers in the NSP (pure).

Meridio's ``vipAgent`` rule (reference §3.6): the VIPs are in BIRD, hence announced to the gateways,
only while the frontend has gateway connectivity **and** its collocated load balancer reports
forwarding availability (at least one stream with at least one target). Otherwise they are withdrawn.
The LB reports availability as a target whose ``identifier`` is the pod's hostname (§1.7).
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from meridio.api import model

__all__ = ["Reason", "Decision", "decide", "lb_available", "frontend_target"]


class Reason(str, enum.Enum):
    SERVING = "serving"
    NO_CONNECTIVITY = "noConnectivity"
    NO_TARGETS = "noTargets"
    NO_VIPS = "noVips"


@dataclasses.dataclass(frozen=True)
class Decision:
    announce: bool
    reason: Reason


def decide(*, connectivity: bool, lb_available: bool, has_vips: bool = True) -> Decision:
    if not connectivity:
        return Decision(False, Reason.NO_CONNECTIVITY)
    if not lb_available:
        return Decision(False, Reason.NO_TARGETS)
    if not has_vips:
        return Decision(False, Reason.NO_VIPS)
    return Decision(True, Reason.SERVING)


def lb_available(targets: Iterable[Mapping[str, str]], hostname: str) -> bool:
    """Whether the LB's ``StreamAvailabilityService`` response (the targets' contexts) says "serving"."""
    return any(context.get("identifier") == hostname for context in targets)


def frontend_target(hostname: str) -> model.Target:
    """The FRONTEND target a connected frontend keeps registered (``ips=[hostname]``, no stream)."""
    return model.Target.make(ips=[hostname], context={"identifier": hostname}, type=model.TargetType.FRONTEND,
                             status=model.TargetStatus.ENABLED)
