"""The validating admission webhook's core (pure): an ``admission.k8s.io/v1`` AdmissionReview in, the
verdict of THE validator (:func:`meridio.api.validation.validate_object`) out.

The same rules as ``meridio validate`` and ``meridio apply``: schema, trench label, the kind's rules
with the cross-object ones (checked against ``existing``, the namespace's Meridio objects as stored),
and the immutability rules on UPDATE. A refusal is what the API server's own validation would say
(``apierrors.NewInvalid``): HTTP 422, reason ``Invalid``, one cause per problem with its field, and the
message ``<Kind>.meridio.nordix.org "<name>" is invalid: <field>: <message>``, which ``kubectl`` prints
after ``admission webhook "v<kind>.kb.io" denied the request:``. Meridio's webhook names are kept:
``v<kind>.kb.io`` on ``/validate-meridio-nordix-org-v1-<kind>``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from meridio.api import problems as pb
from meridio.api import resources, validation
from meridio.common import bounds

__all__ = ["ADMISSION_VERSION", "Review", "judge", "parse_request", "path_for", "refusal", "review", "uid_of",
           "webhook_name"]

ADMISSION_VERSION = "admission.k8s.io/v1"
_MAX_CAUSES = 50
_MAX_NAME = 253


def webhook_name(kind: str) -> str:
    return f"v{kind.lower()}.kb.io"


def path_for(kind: str) -> str:
    return f"/validate-meridio-nordix-org-v1-{kind.lower()}"


@dataclasses.dataclass(frozen=True)
class Review:
    """What the webhook needs of a request: who asks what, and the objects concerned."""

    uid: str
    operation: str
    namespace: str
    obj: Mapping[str, Any]
    old: Mapping[str, Any] | None


def parse_request(body: Any) -> Review:
    """The request of an AdmissionReview; :class:`ValueError` naming what is missing or malformed."""
    if not isinstance(body, Mapping) or body.get("apiVersion") != ADMISSION_VERSION \
            or body.get("kind") != "AdmissionReview":
        raise ValueError(f"not an {ADMISSION_VERSION} AdmissionReview")
    req = body.get("request")
    if not isinstance(req, Mapping):
        raise ValueError("request: Required value")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise ValueError("request.uid: Required value (a string of at most 128 characters)")
    operation = req.get("operation")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise ValueError(f"request.operation: Unsupported value: {bounds.quote(str(operation))}")
    obj = req.get("object")
    old = req.get("oldObject")
    if operation in ("CREATE", "UPDATE") and not isinstance(obj, Mapping):
        raise ValueError("request.object: Required value")
    if operation == "UPDATE" and not isinstance(old, Mapping):
        raise ValueError("request.oldObject: Required value")
    namespace = req.get("namespace") if isinstance(req.get("namespace"), str) else ""
    return Review(uid, str(operation), str(namespace), obj if isinstance(obj, Mapping) else {},
                  old if isinstance(old, Mapping) else None)


def _response(uid: str, allowed: bool, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if status is not None:
        response["status"] = dict(status)
    return {"apiVersion": ADMISSION_VERSION, "kind": "AdmissionReview", "response": response}


def _invalid(kind: str, name: str, found: Sequence[pb.Problem]) -> dict[str, Any]:
    """The ``metav1.Status`` of ``apierrors.NewInvalid`` for these problems."""
    parts = [f"{p.field}: {p.message}" if p.field else p.message for p in found]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    name = name[:_MAX_NAME]
    return {
        "status": "Failure", "code": 422, "reason": "Invalid",
        "message": f'{kind}.{resources.GROUP} "{name}" is invalid: {joined}',
        "details": {"name": name, "group": resources.GROUP, "kind": kind,
                    "causes": [{"reason": "FieldValueInvalid", "message": p.message, "field": p.field}
                               for p in found[:_MAX_CAUSES]]},
    }


def uid_of(body: Any) -> str:
    """The request's uid as far as it can be read (for answering even a malformed review)."""
    if isinstance(body, Mapping) and isinstance(body.get("request"), Mapping):
        raw = body["request"].get("uid")
        if isinstance(raw, str) and len(raw) <= 128:
            return raw
    return ""


def refusal(uid: str, code: int, reason: str, message: str) -> dict[str, Any]:
    """An AdmissionReview refusing with a ``metav1.Status`` of ``code`` (400 malformed, 503 unavailable)."""
    return _response(uid, False, {"status": "Failure", "code": code, "reason": reason, "message": message})


def review(body: Any, existing: Sequence[resources.Resource]) -> dict[str, Any]:
    """The AdmissionReview answering ``body``, given the namespace's Meridio objects as stored."""
    try:
        req = parse_request(body)
    except ValueError as exc:
        return refusal(uid_of(body), 400, "BadRequest", f"malformed admission review: {exc}")
    return judge(req, existing)


def judge(req: Review, existing: Sequence[resources.Resource]) -> dict[str, Any]:
    """The verdict on a parsed request."""
    if req.operation not in ("CREATE", "UPDATE"):
        return _response(req.uid, True)  # Meridio has no rule for DELETE
    kind = str(req.obj.get("kind", ""))
    name = str((req.obj.get("metadata") or {}).get("name", "")) if isinstance(req.obj.get("metadata"), Mapping) else ""
    try:
        obj = resources.parse_object(_with_namespace(req.obj, req.namespace))
        old = resources.parse_object(_with_namespace(req.old, req.namespace)) if req.old is not None else None
    except pb.ProblemsError as exc:
        return _response(req.uid, False, _invalid(kind, name, exc.problems))
    world = {r.ref: r for r in existing if r.namespace == obj.namespace}
    if old is not None:
        world[old.ref] = old
    world[obj.ref] = obj
    found = validation.validate_object(obj, world, old)
    if found:
        return _response(req.uid, False, _invalid(obj.KIND, obj.name, found))
    return _response(req.uid, True)


def _with_namespace(doc: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The object with its namespace set (an object being created may not carry it yet)."""
    out = dict(doc)
    md = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), Mapping) else {}
    if namespace and not md.get("namespace"):
        md["namespace"] = namespace
    out["metadata"] = md
    return out
