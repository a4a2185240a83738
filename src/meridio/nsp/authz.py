"""Who may change which target in the NSP's registry (pure; called once per Register/Unregister).

The caller is the verified :class:`~meridio.common.identity.Identity` of its TLS certificate. Rules, in
the order they are checked (the first that fails is the answer, ``PERMISSION_DENIED``):

1. the caller's trench, when its identity names one, is this NSP's trench (a TAPA's identity names no
   trench: its target may open streams of any trench it is given);
2. the target's trench, when the target names one, is this NSP's trench;
3. the caller's component may change this type of target: a TAPA only ``DEFAULT`` targets, an LB only
   ``LOADBALANCER`` targets, a frontend only ``FRONTEND`` targets; no other component changes any;
4. a target the registry knows may be updated or removed only by the identity that registered it
   (its owner, stored with the target). A known target without an owner (stored before identities,
   or registered while TLS was off) is taken over by the first permitted caller that registers it.

Watches are not checked here: every verified component may read the configuration and the targets.
"""
from __future__ import annotations

import dataclasses
import enum

from meridio.api import model
from meridio.common import identity as identitymod
from meridio.common.bounds import quote
from meridio.common.grpcutil import PermissionDenied

__all__ = ["Action", "Policy", "MAY_CHANGE"]

MAY_CHANGE: dict[identitymod.Component, model.TargetType] = {
    identitymod.Component.TAPA: model.TargetType.DEFAULT,
    identitymod.Component.LB: model.TargetType.LOADBALANCER,
    identitymod.Component.FRONTEND: model.TargetType.FRONTEND,
}
"""The one target type each component may register, update and remove."""

class Action(enum.Enum):
    REGISTER = "register"
    UNREGISTER = "unregister"


def _target_trench(t: model.Target) -> str:
    s = t.stream
    c = s.conduit if s is not None else None
    tr = c.trench if c is not None else None
    return tr.name if tr is not None else ""


@dataclasses.dataclass(frozen=True)
class Policy:
    trench: str
    """This NSP's trench (from its own certificate's identity)."""

    def check(self, caller: identitymod.Identity, action: Action, target: model.Target, *,
              owner: str | None) -> None:
        """Raise :class:`PermissionDenied` naming the rule if ``caller`` may not do ``action`` on ``target``.

        ``owner``: the identity URI stored with the target, ``None`` if the registry does not know it
        (or knows it without an owner).
        """
        who = f"{caller.component.value} {caller.pod}"  # identity segments: at most 63 characters
        if caller.trench is not None and caller.trench != self.trench:
            raise PermissionDenied(f"{who} belongs to trench {caller.trench!r}, this NSP serves "
                                   f"{self.trench!r}")
        trench = _target_trench(target)
        if trench and trench != self.trench:
            raise PermissionDenied(f"target.stream.conduit.trench {quote(trench)}: this NSP serves "
                                   f"{self.trench!r}")
        allowed = MAY_CHANGE.get(caller.component)
        if allowed is None:
            raise PermissionDenied(f"{who} may not {action.value} targets")
        if target.type != allowed:
            raise PermissionDenied(f"{who} may {action.value} only {allowed.name} targets, not {target.type.name}")
        if owner is not None and owner != caller.uri:
            raise PermissionDenied(f"{who} may not {action.value} a target registered by another identity")
