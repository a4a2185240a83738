"""The CustomResourceDefinitions of ``meridio.nordix.org``, rendered from :mod:`meridio.api.resources`.

One schema: each kind's spec dataclass gives the structural OpenAPI v3 schema
(:func:`meridio.api.schema.openapi`), so the API server refuses what ``meridio validate`` refuses at the
schema level, with the same wording (cross-object rules are the admission webhook's). As Meridio ships
them: namespaced, ``v1`` served and stored, ``v1alpha1`` served and deprecated (same schema), Meridio's
printer columns (the Trench columns read the ``trench`` label), a status subresource. Unlike Meridio's
empty status, ours has ``conditions`` (``Ready``, and why not) and ``observedGeneration``.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

from meridio.api import kubeapi, resources, schema
from meridio.api import problems as pb

__all__ = ["PLURALS", "Stored", "crd", "crds", "list_stored", "status_schema"]

PLURALS = {"Trench": "trenches", "Conduit": "conduits", "Stream": "streams", "Flow": "flows", "Vip": "vips",
           "Attractor": "attractors", "Gateway": "gateways"}

_TRENCH = {"name": "Trench", "type": "string", "jsonPath": ".metadata.labels.trench"}
_COLUMNS: dict[str, list[dict[str, str]]] = {
    "Trench": [{"name": "IP-Family", "type": "string", "jsonPath": ".spec.ip-family"}],
    "Attractor": [{"name": "Interface-Name", "type": "string", "jsonPath": ".spec.interface.name"},
                  {"name": "Interface-Type", "type": "string", "jsonPath": ".spec.interface.type"},
                  {"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways"},
                  {"name": "Vips", "type": "string", "jsonPath": ".spec.vips"},
                  {"name": "Composites", "type": "string", "jsonPath": ".spec.composites"},
                  {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}, _TRENCH],
    "Conduit": [{"name": "Type", "type": "string", "jsonPath": ".spec.type"}, _TRENCH],
    "Stream": [{"name": "Conduit", "type": "string", "jsonPath": ".spec.conduit"}, _TRENCH,
               {"name": "Max-Targets", "type": "integer", "jsonPath": ".spec.max-targets"}],
    "Flow": [{"name": "Vips", "type": "string", "jsonPath": ".spec.vips"},
             {"name": "Dst-Ports", "type": "string", "jsonPath": ".spec.destination-ports"},
             {"name": "Src-Subnets", "type": "string", "jsonPath": ".spec.source-subnets"},
             {"name": "Src-Ports", "type": "string", "jsonPath": ".spec.source-ports"},
             {"name": "Protocols", "type": "string", "jsonPath": ".spec.protocols"},
             {"name": "Byte-Matches", "type": "string", "jsonPath": ".spec.byte-matches"},
             {"name": "Stream", "type": "string", "jsonPath": ".spec.stream"}, _TRENCH],
    "Vip": [{"name": "Address", "type": "string", "jsonPath": ".spec.address"}, _TRENCH],
    "Gateway": [{"name": "Address", "type": "string", "jsonPath": ".spec.address"},
                {"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"}, _TRENCH],
}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def status_schema() -> dict[str, Any]:
    """``status``: Kubernetes-style conditions (one per type) and the generation they describe."""
    condition = {
        "type": "object", "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "minimum": 0},
        },
    }
    return {"type": "object", "properties": {
        "observedGeneration": {"type": "integer", "minimum": 0},
        "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["type"]},
    }}


def _version(name: str, kind: str, *, stored: bool) -> dict[str, Any]:
    spec_cls = resources._SPEC_TYPES[kind]
    columns = [*_COLUMNS[kind]]
    columns.insert(0, {"name": "Ready", "type": "string",
                       "jsonPath": '.status.conditions[?(@.type=="Ready")].status'})
    version: dict[str, Any] = {
        "name": name, "served": True, "storage": stored,
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "description": f"Meridio {kind} ({resources.GROUP}).",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": schema.openapi(spec_cls), "status": status_schema(),
            },
        }},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [*columns, _AGE],
    }
    if not stored:
        version["deprecated"] = True
        version["deprecationWarning"] = f"{resources.GROUP}/{name} {kind} is deprecated; use {resources.API_VERSION}"
    return version


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one Meridio kind."""
    plural = PLURALS[kind]
    return copy.deepcopy({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{resources.GROUP}", "labels": {"app.kubernetes.io/part-of": "meridio"}},
        "spec": {
            "group": resources.GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "categories": ["meridio"]},
            "versions": [_version("v1", kind, stored=True), _version("v1alpha1", kind, stored=False)],
        },
    })


def crds() -> list[dict[str, Any]]:
    """Every Meridio CRD, in the order Meridio lists its kinds."""
    return [crd(kind) for kind in resources.MERIDIO_KINDS]


@dataclasses.dataclass(frozen=True)
class Stored:
    """A namespace's Meridio objects as the API server holds them."""

    objects: list[resources.Resource]
    """Those that read as Meridio objects (one stored before a rule existed is left out, not fatal)."""
    raw: dict[tuple[str, str], Any]
    """(kind, name) → the stored object as returned (uid, generation, status), readable or not."""


async def list_stored(api: kubeapi.Client, namespace: str) -> Stored:
    """One list per kind: what the operator reconciles from and the webhook judges against."""
    objs: list[resources.Resource] = []
    raw: dict[tuple[str, str], Any] = {}
    for kind, plural in PLURALS.items():
        listed = await api.get(f"/apis/{resources.GROUP}/v1/namespaces/{namespace}/{plural}")
        for item in listed.get("items", []):
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", resources.API_VERSION)
            raw[(kind, item["metadata"]["name"])] = item
            try:
                objs.append(resources.parse_object(item))
            except pb.ProblemsError as exc:
                logging.getLogger("meridio.operator").warning("object %s/%s unreadable: %s", kind,
                                                              item["metadata"]["name"], exc)
    return Stored(objs, raw)
