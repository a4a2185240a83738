"""Kubernetes object metadata (name, namespace, labels, annotations) with the API server's checks.

Server-populated fields (``uid``, ``resourceVersion``, ``creationTimestamp``, ``managedFields``, ...)
are accepted so that ``get -o yaml`` output can be applied again, and are not kept.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from meridio.api import problems as pb
from meridio.api.schema import Issue

__all__ = ["Metadata", "decode_metadata", "encode_metadata", "RFC1123_SUBDOMAIN_PATTERN",
           "subdomain_error", "label_error"]

RFC1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
RFC1123_SUBDOMAIN = rf"{RFC1123_LABEL}(\.{RFC1123_LABEL})*"
RFC1123_SUBDOMAIN_PATTERN = rf"^{RFC1123_SUBDOMAIN}$"
LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
IGNORED = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
           "ownerReferences", "finalizers", "generateName", "deletionTimestamp", "deletionGracePeriodSeconds")


@dataclasses.dataclass(frozen=True)
class Metadata:
    name: str
    namespace: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    """Sorted ``(key, value)`` pairs; see :meth:`label` and :func:`Metadata.make`."""
    annotations: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def make(name: str, namespace: str = "default", labels: Mapping[str, str] | None = None,
             annotations: Mapping[str, str] | None = None) -> Metadata:
        return Metadata(name, namespace, tuple(sorted((labels or {}).items())),
                        tuple(sorted((annotations or {}).items())))

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    @property
    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def annotations_dict(self) -> dict[str, str]:
        return dict(self.annotations)


def subdomain_error(value: str) -> str | None:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not re.fullmatch(RFC1123_SUBDOMAIN, value):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                f"validation is '{RFC1123_SUBDOMAIN}')")
    return None


def rfc1123_label_error(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not re.fullmatch(RFC1123_LABEL, value):
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                f"validation is '{RFC1123_LABEL}')")
    return None


def label_error(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not re.fullmatch(LABEL_VALUE, value):
        return ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                f"'12345', regex used for validation is '{LABEL_VALUE}')")
    return None


def _key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return "a qualified name must consist of an optional DNS subdomain prefix and a name, separated by '/'"
    if prefix and subdomain_error(prefix):
        return f"prefix part {subdomain_error(prefix)}"
    if len(name) > 63 or not re.fullmatch(QUALIFIED_NAME, name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                f"validation is '{QUALIFIED_NAME}') and be no more than 63 characters")
    return None


def _decode_map(raw: Any, path: str, issues: list[Issue], *, labels: bool) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        issues.append(Issue(path, pb.invalid(raw, f"{path} in body must be of type object")))
        return ()
    out = []
    for k, v in raw.items():
        if not isinstance(k, str) or (err := _key_error(k)) is not None:
            issues.append(Issue(path, pb.invalid(k, _key_error(str(k)) or "must be a string")))
            continue
        if not isinstance(v, str):
            issues.append(Issue(f"{path}.{k}", pb.invalid(v, f"{path}.{k} in body must be of type string")))
            continue
        if labels and (err := label_error(v)) is not None:
            issues.append(Issue(path, pb.invalid(v, err)))
            continue
        out.append((k, v))
    return tuple(sorted(out))


def decode_metadata(raw: Any) -> tuple[Metadata | None, list[Issue]]:
    issues: list[Issue] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return None, [Issue("metadata", pb.invalid(raw, "metadata in body must be of type object"))]
    for k in raw:
        if k not in ("name", "namespace", "labels", "annotations") + IGNORED:
            issues.append(Issue(f"metadata.{k}", pb.unknown_field(f"metadata.{k}")))
    name, namespace = raw.get("name"), raw.get("namespace", "default")
    if name is None or name == "":
        issues.append(Issue("metadata.name", pb.required("name or generateName is required")))
    elif not isinstance(name, str):
        issues.append(Issue("metadata.name", pb.invalid(name, "metadata.name in body must be of type string")))
    elif (err := subdomain_error(name)) is not None:
        issues.append(Issue("metadata.name", pb.invalid(name, err)))
    if namespace is None:
        namespace = "default"
    if not isinstance(namespace, str):
        issues.append(Issue("metadata.namespace", pb.invalid(namespace, "metadata.namespace in body must be of type string")))
    elif (err := rfc1123_label_error(namespace)) is not None:
        issues.append(Issue("metadata.namespace", pb.invalid(namespace, err)))
    labels = _decode_map(raw.get("labels"), "metadata.labels", issues, labels=True)
    annotations = _decode_map(raw.get("annotations"), "metadata.annotations", issues, labels=False)
    if issues:
        return None, issues
    return Metadata(str(name), str(namespace), labels, annotations), []


def encode_metadata(md: Metadata) -> dict[str, Any]:
    out: dict[str, Any] = {"name": md.name, "namespace": md.namespace}
    if md.labels:
        out["labels"] = dict(md.labels)
    if md.annotations:
        out["annotations"] = dict(md.annotations)
    return out
