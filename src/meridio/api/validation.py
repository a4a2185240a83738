"""THE validator: every Meridio rule for creating, updating and deleting resources, in one entry point.

The local runtime (``meridio apply``), the CLI (``meridio validate``/``render``) and the operator's
admission webhook all call :func:`validate_apply`; nothing else decides whether a resource is valid.

``validate_apply(existing, incoming)`` applies ``incoming`` in order on top of ``existing``: an object
whose ``(kind, namespace, name)`` is already there is an update, otherwise a create. Each object is
checked against the state so far (so a file that defines the Trench first and then its Conduits
validates) with: the CRD schema (for objects built in code), the trench label rules, the kind's
webhook rules (including the cross-object ones: a VIP or a conduit shared by two attractors, a VIP
shared by flows of two conduits) and, for updates, the immutability rules. All problems are returned;
an empty list means "apply everything", anything else means "apply nothing".

Meridio quirks kept on purpose: flow priority 0 is accepted; VIP addresses may be ranges (``/24``);
a VIP shared with a flow whose stream does not exist is only logged (``vipConflictPossible``).
Deviations: every problem is reported (Meridio's update path stops at the first forbidden change),
and a create without a trench label says so rather than "unable to find the trench in label".
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from meridio.api import resources, rules
from meridio.api.problems import Problem, ProblemsError
from meridio.common import log as logmod

__all__ = ["Problem", "ProblemsError", "validate_apply", "validate_object", "validate_delete", "plan_delete",
           "apply_state"]


def validate_object(obj: resources.Resource, world: rules.World, old: resources.Resource | None = None,
                    log: logmod.Logger = logmod.null) -> list[Problem]:
    """Problems of ``obj`` created (``old`` None) or replacing ``old``, given every object in ``world``.

    ``world`` should already contain ``obj`` (the state the apply would produce) for the cross-object
    rules; it is looked up by ``(kind, namespace, name)``.
    """
    problems = resources.check_schema(obj)
    problems += rules.label_problems(obj, world, creating=old is None)
    if old is not None:
        problems += rules.update_problems(old, obj)
    problems += rules.spec_problems(obj, world, log)
    return problems


def validate_apply(existing: Sequence[resources.Resource], incoming: Sequence[resources.Resource],
                   log: logmod.Logger = logmod.null) -> list[Problem]:
    """All problems of applying ``incoming`` (in order) on top of ``existing``; [] = apply everything."""
    world = {r.ref: r for r in existing}
    problems: list[Problem] = []
    for obj in incoming:
        old = world.get(obj.ref)
        world[obj.ref] = obj
        problems += validate_object(obj, world, old, log)
    return problems


def apply_state(existing: Sequence[resources.Resource], incoming: Sequence[resources.Resource],
                log: logmod.Logger = logmod.null) -> list[resources.Resource]:
    """The objects after applying ``incoming`` (order: existing order, new ones appended);
    :class:`ProblemsError` (and nothing applied) if :func:`validate_apply` finds any problem."""
    problems = validate_apply(existing, incoming, log)
    if problems:
        raise ProblemsError(problems)
    state = {r.ref: r for r in existing}
    for obj in incoming:
        state[obj.ref] = obj
    return list(state.values())


def plan_delete(existing: Sequence[resources.Resource], to_delete: Iterable[resources.Resource | tuple[str, str, str]]
                ) -> list[resources.Resource]:
    """What deleting ``to_delete`` removes: the objects themselves and, for a Trench, every object of that
    trench in its namespace (Meridio's owner references make Kubernetes garbage-collect them)."""
    refs = {x.ref if not isinstance(x, tuple) else x for x in to_delete}
    trenches = {(ns, name) for kind, ns, name in refs if kind == "Trench"}
    return [r for r in existing
            if r.ref in refs or (r.KIND != "Trench" and (r.namespace, r.metadata.label("trench")) in trenches)]


def validate_delete(existing: Sequence[resources.Resource],
                    to_delete: Iterable[resources.Resource | tuple[str, str, str]]) -> list[Problem]:
    """Deleting what does not exist is an error (``not found``, as the API server); Meridio has no other
    delete rule."""
    present = {r.ref for r in existing}
    out = []
    for x in to_delete:
        kind, namespace, name = x.ref if not isinstance(x, tuple) else x
        if (kind, namespace, name) not in present:
            out.append(Problem(kind, name, "", f'{kind.lower()} "{name}" not found in namespace "{namespace}"'))
    return out
