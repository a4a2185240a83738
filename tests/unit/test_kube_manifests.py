"""A cluster install as objects (offline): valid Kubernetes 1.37 objects, the committed kustomize base
and Helm chart are what the code renders, the chart renders the same objects, and the webhook's
certificate logic (names, reuse, renewal)."""
from __future__ import annotations

import base64
import io
import pathlib
import re
import time
from contextlib import redirect_stdout

import kubernetes_validate
import pytest
import yaml

from meridio.api import yamlio
from meridio.cli.main import main
from meridio.runtime.kubernetes import crds, manifests, webhookcerts
from meridio.runtime.local import pki

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_object_of_an_install_is_a_valid_kubernetes_1_37_object() -> None:
    objects = manifests.install("red", "registry.example/meridio:1")
    assert [o["kind"] for o in objects] == ["Namespace", *["CustomResourceDefinition"] * 7, "ServiceAccount", "Role",
                                            "RoleBinding", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]
    for obj in [*objects, manifests.webhook_configuration("red", b"ca"),
                manifests.webhook_configuration("red", b"ca", url="https://127.0.0.1:9443")]:
        kubernetes_validate.validate(obj, "1.37", strict=True)


def test_the_committed_kustomize_base_and_helm_chart_are_what_the_code_renders() -> None:
    files = manifests.packaging_files(yamlio.dump_all)
    for rel, text in files.items():
        assert (ROOT / "deploy" / rel).read_text() == text, f"run: meridio render deploy deploy ({rel})"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["render", "install", "--namespace", "meridio"]) == 0
    assert out.getvalue() == files["kubernetes/base/install.yaml"]


def test_the_helm_chart_renders_the_install_objects() -> None:
    """A stand-in for `helm template` (no helm binary here): the chart's only expressions are the release
    namespace and the image value, substituted as Helm would."""
    chart = ROOT / "deploy" / "helm" / "meridio"
    template = (chart / "templates" / "operator.yaml").read_text()
    assert set(re.findall(r"\{\{[^}]*\}\}", template)) == {manifests.HELM_NAMESPACE, manifests.HELM_IMAGE}
    image = yaml.safe_load((chart / "values.yaml").read_text())["image"]
    rendered = template.replace(manifests.HELM_NAMESPACE, "blue").replace(manifests.HELM_IMAGE, image)
    want = [o for o in manifests.install("blue", image) if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    assert list(yaml.safe_load_all(rendered)) == want
    assert list(yaml.safe_load_all((chart / "crds" / "meridio.nordix.org.yaml").read_text())) == crds.crds()


def test_the_webhook_configuration_goes_through_the_service_or_a_url_with_the_ca_bundle() -> None:
    svc = manifests.webhook_configuration("red", b"PEM")
    hook = svc["webhooks"][0]
    assert hook["clientConfig"] == {"service": {"name": "meridio-webhook", "namespace": "red", "port": 443,
                                                "path": "/validate-meridio-nordix-org-v1-trench"},
                                    "caBundle": base64.b64encode(b"PEM").decode()}
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "red"}}
    url = manifests.webhook_configuration("red", url="https://127.0.0.1:9443/")["webhooks"][6]
    assert url["name"] == "vgateway.kb.io"
    assert url["clientConfig"] == {"url": "https://127.0.0.1:9443/validate-meridio-nordix-org-v1-gateway"}


def test_the_serving_certificate_names_the_service_and_the_urls_host() -> None:
    assert webhookcerts.server_names("red") == (["meridio-webhook.red.svc", "meridio-webhook.red.svc.cluster.local"], [])
    assert webhookcerts.server_names("red", "https://127.0.0.1:9443")[1] == ["127.0.0.1"]
    assert webhookcerts.server_names("red", "https://op.example:9443")[0][-1] == "op.example"


@pytest.mark.parametrize(("change", "usable"), [
    ("none", True), ("names", False), ("half-life", False), ("other-ca", False), ("other-key", False),
    ("garbage", False),
])
def test_a_stored_certificate_is_reused_only_while_it_is_current_for_the_names(change: str, usable: bool) -> None:
    now = time.time()
    names = webhookcerts.server_names("red", "https://127.0.0.1:9443")
    ca = pki.Ca.create("red webhook", now=now)
    cert, key = ca.issue_server(*names, now=now, lifetime_s=webhookcerts.LIFETIME_S)
    files = {"ca.crt": ca.cert_pem, "ca.key": ca.key_pem, "tls.crt": cert, "tls.key": key}
    at = now
    if change == "names":
        names = webhookcerts.server_names("blue")
    elif change == "half-life":
        at = now + webhookcerts.LIFETIME_S / 2 + 60
    elif change == "other-ca":
        other = pki.Ca.create("other", now=now)
        files["ca.crt"], files["ca.key"] = other.cert_pem, other.key_pem
    elif change == "other-key":
        files["tls.key"] = ca.issue_server(*names, now=now, lifetime_s=60)[1]
    elif change == "garbage":
        files["tls.crt"] = b"not a certificate"
    assert (webhookcerts._usable(files, names, at) is not None) is usable
