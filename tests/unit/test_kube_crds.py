"""The CRDs rendered from the project's one schema (offline; the kube tier installs them in a real API
server): every field of every spec dataclass is in its CRD with the same rules and defaults, and the
committed manifests under deploy/ are what ``meridio render crds`` prints."""
from __future__ import annotations

import dataclasses
import io
import pathlib
import typing
from contextlib import redirect_stdout
from typing import Any

import kubernetes_validate
import pytest
import yaml

from meridio.api import resources, schema
from meridio.cli.main import main
from meridio.runtime.kubernetes import crds, rbac

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "kubernetes" / "crds" / "meridio.nordix.org.yaml"


def _spec_schema(kind: str, version: str = "v1") -> dict[str, Any]:
    crd = crds.crd(kind)
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def _walk(cls: type, node: dict[str, Any], path: str = "spec") -> list[str]:
    """Every field path of ``cls`` checked against its schema node; returns the paths seen."""
    seen = []
    props = node["properties"]
    for f in dataclasses.fields(cls):
        k = f.metadata["schema"]
        sub = props[k.name]
        seen.append(f"{path}.{k.name}")
        assert (k.name in node.get("required", [])) == k.required, f"{path}.{k.name}"
        leaf = sub["items"] if sub["type"] == "array" else sub
        if leaf["type"] == "object":
            seen += _walk(_dataclass_of(cls, f.name), leaf, f"{path}.{k.name}")
            continue
        assert leaf.get("enum") == (list(k.enum) if k.enum else None)
        assert leaf.get("pattern") == k.pattern
        assert leaf.get("minimum") == k.minimum and leaf.get("maximum") == k.maximum
    assert set(props) == {f.metadata["schema"].name for f in dataclasses.fields(cls)}
    return seen


def _dataclass_of(cls: type, field: str) -> type:
    tp = typing.get_type_hints(cls)[field]
    tp = schema._optional_inner(tp) or tp
    tp = schema._list_item(tp) or tp
    assert dataclasses.is_dataclass(tp)
    return tp  # type: ignore[return-value]


@pytest.mark.parametrize("kind", list(resources.MERIDIO_KINDS))
def test_every_spec_field_is_in_the_crd_with_its_rules_in_both_versions(kind: str) -> None:
    spec_cls = resources._SPEC_TYPES[kind]
    assert _spec_schema(kind, "v1") == _spec_schema(kind, "v1alpha1")
    assert _walk(spec_cls, _spec_schema(kind))


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """What the API server's defaulting does with a structural schema (objects present get defaults)."""
    if node["type"] == "object" and isinstance(value, dict):
        out = dict(value)
        for name, sub in node["properties"].items():
            if name not in out and "default" in sub:
                out[name] = sub["default"]
            if name in out:
                out[name] = _apply_defaults(sub, out[name])
        return out
    if node["type"] == "array" and isinstance(value, list):
        return [_apply_defaults(node["items"], v) for v in value]
    return value


def test_the_crd_defaults_are_the_defaults_meridio_applies_when_reading() -> None:
    """For every Meridio e2e object: the API server's defaults + meridio's reading = meridio's reading."""
    count = 0
    for path in sorted((ROOT / "examples" / "e2e").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in resources.MERIDIO_KINDS:
                continue
            defaulted = {**doc, "spec": _apply_defaults(_spec_schema(doc["kind"]), doc.get("spec") or {})}
            assert resources.parse_object(defaulted) == resources.parse_object(doc), (path.name, doc["metadata"])
            assert resources.to_dict(resources.parse_object(doc))["spec"] == \
                _apply_defaults(_spec_schema(doc["kind"]), resources.to_dict(resources.parse_object(doc))["spec"])
            count += 1
    assert count >= 15


def test_meridios_printer_columns_and_a_status_with_conditions() -> None:
    columns = {k: [c["name"] for c in crds.crd(k)["spec"]["versions"][0]["additionalPrinterColumns"]]
               for k in resources.MERIDIO_KINDS}
    assert columns["Attractor"] == ["Ready", "Interface-Name", "Interface-Type", "Gateways", "Vips", "Composites",
                                    "Replicas", "Trench", "Age"]
    assert columns["Flow"] == ["Ready", "Vips", "Dst-Ports", "Src-Subnets", "Src-Ports", "Protocols", "Byte-Matches",
                               "Stream", "Trench", "Age"]
    trench_col = crds.crd("Vip")["spec"]["versions"][0]["additionalPrinterColumns"][2]
    assert trench_col == {"name": "Trench", "type": "string", "jsonPath": ".metadata.labels.trench"}
    status = crds.crd("Trench")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    v1alpha1 = crds.crd("Trench")["spec"]["versions"][1]
    assert v1alpha1["served"] and not v1alpha1["storage"] and v1alpha1["deprecated"]


def test_the_committed_crd_manifests_are_what_meridio_render_crds_prints() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["render", "crds"]) == 0
    assert COMMITTED.read_text() == out.getvalue(), "run: meridio render crds > deploy/kubernetes/crds/meridio.nordix.org.yaml"
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out.getvalue())] == [
        f"{p}.meridio.nordix.org" for p in crds.PLURALS.values()]


def test_every_crd_and_the_operators_rbac_are_valid_kubernetes_1_37_objects_offline() -> None:
    """kubernetes-validate's schemas of Kubernetes 1.37, strict (unknown fields are errors)."""
    objects = [*crds.crds(), rbac.operator_role("meridio"), rbac.operator_role_binding("meridio"),
               rbac.service_account("meridio")]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.37", strict=True)
    bad = crds.crd("Vip")
    bad["spec"]["scope"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.37", strict=True)
