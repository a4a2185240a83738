"""The target registry's pure core: IDs, validation, keepalive deadlines, conflicts (no I/O).

Behaviour (Meridio ``pkg/nsp/registry``, reference §1.5):

- Target ID = ``"<ips joined with ';'>-<type int>-<stream>.<conduit>.<trench>"`` (missing parents are
  empty strings). Our own LOADBALANCER targets may have no IPs: their ID uses the ``identifier``
  context value in place of the IPs, so replicas of one conduit do not share an ID.
- ``register`` of an unknown ID stores the target with status **DISABLED** whatever was asked (a target
  registers DISABLED, then updates itself to ENABLED); of a known ID it replaces status and context
  and refreshes the keepalive deadline.
- Keepalive: an entry not re-registered within ``timeout`` seconds expires. Restored entries (after a
  restart) get a fresh deadline.
- Conflicts ("clearConflicts"): in Meridio, sqlite rows key a stream by its *name* alone, so registering
  a target in stream ``s`` of conduit ``c2`` re-parents every stored target of a stream named ``s`` (of
  conduit ``c1``), whose ID then no longer matches and which is deleted. We store the whole chain, so
  we state the effect directly: after a register, **other targets whose stream has the same non-empty
  name but a different conduit or trench are removed** (a stream moved to another conduit leaves no
  stale targets behind). Identifier collisions inside one stream are **not** conflicts: TAPA detects
  them itself after registering DISABLED and re-picks (§1.2); evicting the older target would drop an
  ENABLED target that is carrying traffic. Same IPs in another stream are not conflicts either (one
  target opens several streams).
- Validation (:func:`validate`): Meridio accepts anything; we reject what cannot be meant — see there.

Mutations are planned first (:meth:`Registry.plan_register`, ...) and applied after the caller has
persisted the :class:`Change`, so a failed write leaves the registry untouched.
"""
from __future__ import annotations

import dataclasses

from meridio.api import model
from meridio.common import clock as clockmod
from meridio.common.retry import PermanentError

__all__ = ["InvalidTarget", "target_id", "validate", "normalize", "Change", "Registry", "DEFAULT_TIMEOUT"]

class InvalidTarget(PermanentError):
    """The target cannot be registered; the message names the field and the rule."""


DEFAULT_TIMEOUT = 60.0
"""Seconds without a refresh after which an entry expires (``NSP_ENTRY_TIMEOUT``)."""


def _chain(t: model.Target) -> tuple[str, str, str]:
    s = t.stream
    c = s.conduit if s is not None else None
    tr = c.trench if c is not None else None
    return (s.name if s else "", c.name if c else "", tr.name if tr else "")


def target_id(t: model.Target) -> str:
    ips = ";".join(t.ips)
    if not ips and t.type == model.TargetType.LOADBALANCER:
        ips = t.identifier or ""
    stream, conduit, trench = _chain(t)
    return f"{ips}-{int(t.type)}-{stream}.{conduit}.{trench}"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidTarget(message)


def validate(t: model.Target) -> None:
    """Raise :class:`InvalidTarget` (naming the field and the rule) if ``t`` cannot be registered.

    - ``status``: ENABLED or DISABLED (ANY is only meaningful in a Watch filter);
    - every ``ips`` entry non-empty; DEFAULT and FRONTEND targets need at least one (their ID is
      built from them);
    - DEFAULT targets: ``stream.name``, ``stream.conduit.name`` and ``stream.conduit.trench.name``;
    - LOADBALANCER targets: ``stream.conduit.name`` and a ``context["identifier"]``.
    """
    _require(t.status in (model.TargetStatus.ENABLED, model.TargetStatus.DISABLED),
             "target.status: must be ENABLED or DISABLED (ANY is only valid in a Watch filter)")
    for i, ip in enumerate(t.ips):
        _require(bool(ip.strip()), f"target.ips[{i}]: must not be empty")
    if t.type in (model.TargetType.DEFAULT, model.TargetType.FRONTEND):
        _require(bool(t.ips), f"target.ips: a {t.type.name} target needs at least one IP (or hostname)")
    stream, conduit, trench = _chain(t)
    if t.type == model.TargetType.DEFAULT:
        _require(bool(stream), "target.stream.name: a DEFAULT target must name its stream")
        _require(bool(conduit), "target.stream.conduit.name: a DEFAULT target must name its conduit")
        _require(bool(trench), "target.stream.conduit.trench.name: a DEFAULT target must name its trench")
    if t.type == model.TargetType.LOADBALANCER:
        _require(bool(conduit), "target.stream.conduit.name: a LOADBALANCER target must name its conduit")
        _require(bool(t.identifier), 'target.context["identifier"]: a LOADBALANCER target needs one')


def _strip_conduit(c: model.Conduit | None) -> model.Conduit | None:
    return None if c is None else model.Conduit(c.name, c.trench)


def normalize(t: model.Target) -> model.Target:
    """What is stored: the target with its stream chain reduced to names (+ maxTargets).

    Port NATs of a conduit are configuration, not part of a target (Meridio's store drops them too).
    """
    if t.stream is None:
        return t
    stream = dataclasses.replace(t.stream, conduit=_strip_conduit(t.stream.conduit))
    return dataclasses.replace(t, stream=stream)


@dataclasses.dataclass(frozen=True)
class Change:
    """A planned mutation: entries to store (``put``), IDs whose deadline restarts, IDs to delete."""

    put: tuple[tuple[str, model.Target], ...] = ()
    refresh: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def modifies_targets(self) -> bool:
        """True if the list of targets changes (a bare refresh does not)."""
        return bool(self.put or self.delete)


class Registry:
    """Targets by ID with keepalive deadlines on an injected monotonic clock."""

    def __init__(self, *, clock: clockmod.Clock, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._clock = clock
        self.timeout = timeout
        self._targets: dict[str, model.Target] = {}
        self._deadlines: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, tid: object) -> bool:
        return tid in self._targets

    def get(self, tid: str) -> model.Target | None:
        return self._targets.get(tid)

    def targets(self) -> tuple[model.Target, ...]:
        """All targets, ordered by ID."""
        return tuple(self._targets[k] for k in sorted(self._targets))

    def now(self) -> float:
        return self._clock.monotonic()

    def deadline(self, tid: str) -> float | None:
        return self._deadlines.get(tid)

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    # --- planning (pure) ------------------------------------------------------------------------

    def plan_register(self, target: model.Target) -> Change:
        """Validate ``target`` (:class:`InvalidTarget`) and plan its registration."""
        validate(target)
        target = normalize(target)
        tid = target_id(target)
        if tid in self._targets:
            # The chain is part of the ID, so a known ID was checked for conflicts when it was new
            # (and would have been removed by any later conflicting registration): skip the scan.
            put = () if self._targets[tid] == target else ((tid, target),)
            return Change(put=put, refresh=(tid,))
        target = dataclasses.replace(target, status=model.TargetStatus.DISABLED)
        return Change(put=((tid, target),), refresh=(tid,), delete=self._conflicts(tid, target))

    def _conflicts(self, tid: str, target: model.Target) -> tuple[str, ...]:
        stream, conduit, trench = _chain(target)
        if not stream:
            return ()
        return tuple(other for other, t in sorted(self._targets.items())
                     if other != tid and _chain(t)[0] == stream and _chain(t)[1:] != (conduit, trench))

    def plan_unregister(self, target: model.Target) -> Change:
        """Plan the removal of ``target``'s ID (nothing if unknown: Meridio answers OK too)."""
        tid = target_id(normalize(target))
        return Change(delete=(tid,)) if tid in self._targets else Change()

    def plan_expiry(self) -> Change:
        """The entries whose deadline has passed."""
        now = self._clock.monotonic()
        return Change(delete=tuple(sorted(k for k, d in self._deadlines.items() if d <= now)))

    # --- applying -------------------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        deadline = self._clock.monotonic() + self.timeout
        for tid, target in change.put:
            self._targets[tid] = target
        for tid in change.refresh:
            if tid in self._targets:
                self._deadlines[tid] = deadline
        for tid in change.delete:
            self._targets.pop(tid, None)
            self._deadlines.pop(tid, None)

    def restore(self, targets: list[model.Target]) -> None:
        """Load stored targets (after a restart) with fresh deadlines."""
        deadline = self._clock.monotonic() + self.timeout
        for t in targets:
            tid = target_id(t)
            self._targets[tid] = t
            self._deadlines[tid] = deadline
