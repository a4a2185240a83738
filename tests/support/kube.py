"""A real Kubernetes control plane for the operator's tests: kine (sqlite), kube-apiserver and
kube-controller-manager, built from the Go module proxy by ``scripts/kube-test-servers`` (cached), run on
127.0.0.1 ports of their own, and a small REST client for it.

No kubelet runs here (nor could one: no container runtime), so Pods stay Pending; everything up to them
is real: admission, validation against the CRDs' schemas, RBAC, the garbage collector, the workload
controllers. :class:`ControlPlane` stops exactly the processes it started, by pid, and removes its
directory.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meridio.runtime.local import pki

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADMIN_TOKEN_USER = "meridio-test-admin"


class KubeError(Exception):
    """An API call answered with an error status (``status``, the API server's ``message``)."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, dict(body or {})


def build_servers() -> pathlib.Path:
    """The directory holding kube-apiserver, kube-controller-manager and kine (built on first use)."""
    done = subprocess.run([str(ROOT / "scripts" / "kube-test-servers")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kube-test-servers failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return pathlib.Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_account_keys(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = directory / "sa.key", directory / "sa.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@dataclasses.dataclass(frozen=True)
class Serving:
    cert: pathlib.Path
    key: pathlib.Path
    ca: pathlib.Path
    """What clients trust (the API server's --client-ca is not this: it only serves with it)."""


def serving_cert(directory: pathlib.Path, stem: str = "serving") -> Serving:
    """A serving certificate for 127.0.0.1/localhost from a CA of its own, made with the product's CA code
    (for the API server: known before it starts, so clients verify it from the first call; for a webhook:
    the CA is its caBundle)."""
    ca = pki.Ca.create(f"test {stem}", now=time.time())
    cert, key = ca.issue_server(["localhost"], ["127.0.0.1"], now=time.time(), lifetime_s=2 * 86400)
    out = Serving(directory / f"{stem}.crt", directory / f"{stem}.key", directory / f"{stem}-ca.crt")
    out.cert.write_bytes(cert)
    out.key.write_bytes(key)
    out.ca.write_bytes(ca.cert_pem)
    return out


@dataclasses.dataclass
class Client:
    """REST calls with a bearer token, verifying the API server's certificate."""

    server: str
    token: str
    ca_file: str

    def __post_init__(self) -> None:
        self._ctx = ssl.create_default_context(cafile=self.ca_file)

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                accept: str = "application/json", timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type, "Accept": accept})
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                status = json.loads(raw)
            except ValueError:
                status = {"message": raw.decode(errors="replace")}
            raise KubeError(exc.code, str(status.get("message", "")), status) from None
        return json.loads(raw) if raw else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


@dataclasses.dataclass
class ControlPlane:
    """kine + kube-apiserver (+ kube-controller-manager) on loopback ports, with an admin token."""

    bindir: pathlib.Path
    workdir: pathlib.Path = dataclasses.field(default_factory=lambda: pathlib.Path(
        tempfile.mkdtemp(prefix="meridio-kube-")))
    controller_manager: bool = True
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    admin: Client | None = None

    def start(self, timeout: float = 120.0) -> None:
        wd = self.workdir
        etcd_port, api_port = free_port(), free_port()
        sa_key, sa_pub = _service_account_keys(wd)
        serving = serving_cert(wd)
        crt, key = serving.cert, serving.key
        token = uuid.uuid4().hex
        (wd / "tokens.csv").write_text(f"{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},system:masters\n")
        self._start("kine", [str(self.bindir / "kine"), "--listen-address", f"127.0.0.1:{etcd_port}",
                             "--metrics-bind-address", "0",  # its default :8080 on every address: two runs would clash
                             "--endpoint", f"sqlite://{wd}/state.db?_journal=WAL&cache=shared"])
        self._start("kube-apiserver", [
            str(self.bindir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--secure-port={api_port}", f"--cert-dir={wd / 'certs'}", f"--tls-cert-file={crt}",
            f"--tls-private-key-file={key}", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
            f"--token-auth-file={wd / 'tokens.csv'}", "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24", "--enable-priority-and-fairness=false",
            "--allow-privileged=true",  # as kubeadm and every CNI-running cluster set it: Meridio's init containers
        ])
        self.admin = Client(f"https://127.0.0.1:{api_port}", token, str(serving.ca))
        self._wait_ready(timeout)
        if self.controller_manager:
            kubeconfig = self.kubeconfig(self.admin, wd / "admin.kubeconfig")
            self._start("kube-controller-manager", [
                str(self.bindir / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
                "--controllers=garbage-collector-controller,deployment-controller,replicaset-controller,"
                "daemonset-controller,statefulset-controller,namespace-controller,serviceaccount-controller",
                f"--service-account-private-key-file={sa_key}", "--use-service-account-credentials=false",
                f"--cert-dir={wd / 'kcm-certs'}",
            ])

    def kubeconfig(self, client: Client, path: pathlib.Path) -> pathlib.Path:
        ca = base64.b64encode(pathlib.Path(client.ca_file).read_bytes()).decode()
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": client.server, "certificate-authority-data": ca}}],
            "users": [{"name": "u", "user": {"token": client.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "u"}}],
        }))
        return path

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait_ready(self, timeout: float) -> None:
        assert self.admin is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}):\n"
                                       f"{self.log_tail(pathlib.Path(str(proc.args[0])).name)}")
            try:
                req = urllib.request.Request(self.admin.server + "/readyz",
                                             headers={"Authorization": f"Bearer {self.admin.token}"})
                with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=self.admin.ca_file),
                                            timeout=5) as resp:
                    if resp.read().strip() == b"ok":
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise RuntimeError(f"kube-apiserver not ready in {timeout:g} s ({last}):\n{self.log_tail('kube-apiserver')}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- helpers for tests ----------------------------------------------------------------------

    def namespace(self, prefix: str = "t") -> str:
        """A new Kubernetes namespace with a unique name."""
        assert self.admin is not None
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.admin.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": name}})
        return name


    def register_node(self, name: str) -> None:
        """A Node as a kubelet would register it and the node lifecycle controller would clear it once
        Ready. A stand-in (named as one): no kubelet runs here. The API server's TaintNodesByCondition
        admission puts ``node.kubernetes.io/not-ready:NoSchedule`` on a new Node, which DaemonSet pods do
        not tolerate; the status and the cleared taint are what the real pair would write."""
        assert self.admin is not None
        self.admin.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {"kubernetes.io/hostname": name}}})
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.admin.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in",
                            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}},
            content_type="application/merge-patch+json")
        self.admin.request("PATCH", f"/api/v1/nodes/{name}", {"spec": {"taints": None}},
                           content_type="application/merge-patch+json")


@contextlib.contextmanager
def control_plane(**kw: Any) -> Iterator[ControlPlane]:
    cp = ControlPlane(build_servers(), **kw)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.2, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


__all__ = ["ADMIN_TOKEN_USER", "Client", "ControlPlane", "KubeError", "build_servers", "control_plane", "free_port", "serving_cert",
           "wait_until"]
