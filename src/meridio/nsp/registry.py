"""The target registry's pure core: IDs, validation, scope, keepalive deadlines (no I/O).

Behaviour (Meridio ``pkg/nsp/registry``, reference §1.5):

- Target ID = ``"<ips joined with ';'>-<type int>-<stream>.<conduit>.<trench>"`` (missing parents are
  empty strings). Our own LOADBALANCER targets may have no IPs: their ID uses the ``identifier``
  context value in place of the IPs, so replicas of one conduit do not share an ID.
- ``register`` of an unknown ID stores the target with status **DISABLED** whatever was asked (a target
  registers DISABLED, then updates itself to ENABLED); of a known ID it replaces status and context
  and refreshes the keepalive deadline.
- Keepalive: an entry not re-registered within ``timeout`` seconds expires. Restored entries (after a
  restart) get a fresh deadline.
- Keys: a target belongs to its trench, conduit and stream; all three are part of its ID, and nothing a
  registration in one stream does touches another stream's targets. Meridio's "clearConflicts" (its
  sqlite rows key a stream by its *name* alone, so registering in stream ``s`` of conduit ``c2`` or of
  another trench re-parents and then deletes every target of a stream named ``s`` elsewhere) is not
  reproduced: it let one registration for a made-up trench remove every real target of a same-named
  stream. A stream moved to another conduit needs nothing either: its TAPAs close it in the old conduit
  and open it in the new one, and an old entry nobody refreshes expires with the keepalive.
  Identifier collisions inside one stream are not resolved here: TAPA detects them itself after
  registering DISABLED and re-picks (§1.2). Same IPs in another stream are fine (one target opens
  several streams).
- Validation (:func:`validate`, sizes and syntax; :func:`check_scope`, against the NSP's configuration):
  Meridio accepts anything; we reject what cannot be meant — see there.

Mutations are planned first (:meth:`Registry.plan_register`, ...) and applied after the caller has
persisted the :class:`Change`, so a failed write leaves the registry untouched.
"""
from __future__ import annotations

import dataclasses
import ipaddress

from meridio.api import model
from meridio.common import bounds
from meridio.common import clock as clockmod
from meridio.common.grpcutil import FailedPrecondition
from meridio.common.retry import PermanentError

__all__ = ["InvalidTarget", "NotConfigured", "target_id", "validate", "validate_filter", "check_scope", "normalize",
           "Change", "Registry", "DEFAULT_TIMEOUT", "MAX_IPS"]

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


MAX_IPS = 32
"""IPs (or, for a FRONTEND target, hostnames) one target may carry."""
MAX_CONTEXT_ENTRIES = 16
MAX_CONTEXT_KEY_CHARS = 63
MAX_CONTEXT_VALUE_CHARS = 256


def _check_ip(field: str, value: str, kind: model.TargetType) -> None:
    """An address or an interface address (``172.16.1.6/24``, as TAPA registers its conduit IPs); a
    FRONTEND target may name its host instead (Meridio's frontends register ``[hostname]``)."""
    _require(bool(value.strip()), f"{field}: must not be empty")
    bounds.check_length(field, value, bounds.MAX_NAME_CHARS, InvalidTarget)
    try:
        ipaddress.ip_interface(value)
        return
    except ValueError:
        pass
    if kind == model.TargetType.FRONTEND:
        bounds.check_name(field, value, InvalidTarget)
        return
    raise InvalidTarget(f"{field}: {bounds.quote(value)} is not an IP address or address/prefix-length")


def _check_sizes(t: model.Target, *, filter_: bool) -> None:
    bounds.check_count("target.ips", len(t.ips), MAX_IPS, InvalidTarget)
    bounds.check_count("target.context", len(t.context), MAX_CONTEXT_ENTRIES, InvalidTarget)
    for key, value in t.context:
        field = f"target.context[{bounds.quote(key)}]"
        _require(bool(key), "target.context: a key must not be empty")
        bounds.check_length("target.context key", key, MAX_CONTEXT_KEY_CHARS, InvalidTarget)
        bounds.check_length(field, value, MAX_CONTEXT_VALUE_CHARS, InvalidTarget)
    stream, conduit, trench = _chain(t)
    s = t.stream
    _require(s is None or s.max_targets >= 0, "target.stream.maxTargets: must not be negative")
    bounds.check_name("target.stream.name", stream, InvalidTarget, allow_empty=True)
    bounds.check_name("target.stream.conduit.name", conduit, InvalidTarget, allow_empty=True)
    bounds.check_name("target.stream.conduit.trench.name", trench, InvalidTarget, allow_empty=True)
    if not filter_:
        for i, ip in enumerate(t.ips):
            _check_ip(f"target.ips[{i}]", ip, t.type)


def validate_filter(t: model.Target) -> None:
    """Raise :class:`InvalidTarget` if the Watch filter ``t`` is larger than a target may be or names
    something that cannot be a name (empty names are wildcards)."""
    _check_sizes(t, filter_=True)


def validate(t: model.Target) -> None:
    """Raise :class:`InvalidTarget` (naming the field and the rule) if ``t`` cannot be registered.

    - ``status``: ENABLED or DISABLED (ANY is only meaningful in a Watch filter);
    - at most :data:`MAX_IPS` ``ips``, each an IP address or ``address/prefix-length`` (FRONTEND
      targets: or a host name); DEFAULT and FRONTEND targets need at least one (their ID is built
      from them);
    - at most :data:`MAX_CONTEXT_ENTRIES` context entries, keys 1-63 and values at most 256 characters;
    - names (stream, conduit, trench): DNS-1123 subdomains of at most 253 characters, or empty;
    - DEFAULT targets: ``stream.name``, ``stream.conduit.name`` and ``stream.conduit.trench.name``;
    - LOADBALANCER targets: ``stream.conduit.name`` and a ``context["identifier"]``.
    """
    _require(t.status in (model.TargetStatus.ENABLED, model.TargetStatus.DISABLED),
             "target.status: must be ENABLED or DISABLED (ANY is only valid in a Watch filter)")
    _check_sizes(t, filter_=False)
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


class NotConfigured(FailedPrecondition):
    """The target names a conduit or stream this NSP's configuration does not have (yet): it may
    appear with the next configuration, so the caller retries (``FAILED_PRECONDITION``)."""


def check_scope(t: model.Target, config: model.Configuration) -> None:
    """Raise unless ``t`` (already :func:`validate`-d) belongs to what this NSP serves.

    An NSP serves one trench: a target naming another trench is :class:`InvalidTarget` (that will not
    change). What must be configured, else :class:`NotConfigured`: for every type, the trench; for
    DEFAULT targets their conduit and stream (in that conduit); for LOADBALANCER targets their conduit.
    A FRONTEND target carries no stream.
    """
    if config.trench is None:
        raise NotConfigured("target: this NSP has no trench configured yet")
    ours = config.trench.name
    stream, conduit, trench = _chain(t)
    _require(trench in ("", ours), f"target.stream.conduit.trench.name: {bounds.quote(trench)} is not the "
                                   f"trench of this NSP ({ours!r})")
    if t.type == model.TargetType.FRONTEND:
        return
    conduits = {c.name for c in config.conduits if c.trench is None or c.trench.name == ours}
    if conduit not in conduits:
        raise NotConfigured(f"target.stream.conduit.name: conduit {bounds.quote(conduit)} is not configured "
                            f"in trench {ours!r}")
    if t.type == model.TargetType.DEFAULT:
        streams = {s.name for s in config.streams if s.conduit is not None and s.conduit.name == conduit}
        if stream not in streams:
            raise NotConfigured(f"target.stream.name: stream {bounds.quote(stream)} is not configured in "
                                f"conduit {conduit!r}")


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
            put = () if self._targets[tid] == target else ((tid, target),)
            return Change(put=put, refresh=(tid,))
        target = dataclasses.replace(target, status=model.TargetStatus.DISABLED)
        return Change(put=((tid, target),), refresh=(tid,))

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
