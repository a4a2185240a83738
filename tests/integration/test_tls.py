"""Mutual TLS and identity authorisation against real NSP and IPAM processes.

What is real: ``meridio run nsp`` / ``meridio run ipam`` with ``MERIDIO_TLS_DIR`` (the issue's attack:
any process that could reach the NSP registered a target and got VIP traffic, and an outsider's
Unregister emptied a stream); certificates from :class:`meridio.runtime.local.pki.Ca`, the clients are
the components' own (:class:`~meridio.api.nspclient.NspClient`, the proxy's IPAM client). Each NSP and
IPAM also serves plain health on a unix socket (``--health-address``), which is what we wait on.
"""
from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from meridio.common.retry import Backoff, PermanentError, TemporaryError
from meridio.proxy import addressing
from meridio.runtime.local import pki
from tests.integration import nsp_support
from tests.integration.nsp_support import SAMPLE_CONFIG, Reader

C = idm.Component


def ident(component: idm.Component, pod: str, *, trench: str | None = "trench-a", node: str | None = None
          ) -> idm.Identity:
    return idm.Identity(cluster="test", component=component, pod=pod, trench=trench, node=node)


class Certs:
    """A CA and helpers that write TLS directories (``tls.crt``, ``tls.key``, ``ca.crt``) under tmp."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.ca = pki.Ca.create("test", now=time.time())
        self._n = 0

    def issue(self, who: idm.Identity, *, lifetime: float = 3600.0, now: float | None = None,
              ca: pki.Ca | None = None, directory: pathlib.Path | None = None) -> tlsmod.Tls:
        self._n += 1
        where = directory or self.root / f"{who.component.value}-{who.pod}-{self._n}"
        signer = ca or self.ca
        cert, key = signer.issue(who, now=time.time() if now is None else now, lifetime_s=lifetime)
        pki.write_files(where, cert=cert, key=key, ca=signer.cert_pem)
        return tlsmod.Tls(where)


@pytest.fixture
def certs(tmp_path: pathlib.Path) -> Certs:
    return Certs(tmp_path / "tls")


class Nsp:
    def __init__(self, procs: Any, tmp_path: pathlib.Path, tls: tlsmod.Tls) -> None:
        base = tmp_path / f"nsp-{time.monotonic_ns()}"
        base.mkdir(parents=True)
        config = base / "configuration.yaml"
        nsp_support.write_config(config, SAMPLE_CONFIG)
        self.address = f"unix:{base}/nsp.sock"
        self.health = f"unix:{base}/health.sock"
        self.args = ["run", "nsp", "--listen-address", self.address, "--health-address", self.health,
                     "--config-file", str(config), "--datasource", str(base / "registry.db"), "--log-level", "DEBUG"]
        self.env = {tlsmod.DIR_ENV: str(tls.directory)}
        self.procs = procs
        self.proc = procs.meridio(*self.args, env=self.env, name="nsp")
        nsp_support.wait_serving(self.health, self.proc)

    def restart(self) -> None:
        self.procs.stop(self.proc)
        self.proc = self.procs.meridio(*self.args, env=self.env, name="nsp")
        nsp_support.wait_serving(self.health, self.proc)


@pytest.fixture
def nsp(procs: Any, tmp_path: pathlib.Path, certs: Certs) -> Nsp:
    return Nsp(procs, tmp_path, certs.issue(ident(C.NSP, "nsp-trench-a")))


def client(address: str, tls: tlsmod.Tls | None) -> NspClient:
    return NspClient(address, tls=tls, call_timeout=3.0, backoff=lambda: Backoff(initial=0.2, cap=0.5))


def target(ip: str = "172.16.1.2", *, trench: str = "trench-a", identifier: str = "7",
           type_: model.TargetType = model.TargetType.DEFAULT,
           status: model.TargetStatus = model.TargetStatus.ENABLED) -> model.Target:
    stream = model.Stream("stream-a-i", model.Conduit("conduit-a-1", model.Trench(trench)), 100)
    return model.Target.make(ips=[ip], context={"identifier": identifier}, status=status, type=type_, stream=stream)


async def registered(address: str, tls: tlsmod.Tls) -> list[model.Target]:
    """What the NSP holds now, read with a permitted identity."""
    async with client(address, tls) as c:
        watch = Reader(c.watch_targets(model.Target.make(status=model.TargetStatus.ANY)))
        return await watch.next(5.0)  # type: ignore[no-any-return]


def code_of(exc: BaseException) -> str:
    return str(exc).split(": ")[1] if ": " in str(exc) else str(exc)


# ----------------------------------------------------------------------- the handshake


async def test_registration_without_a_certificate_is_refused_and_stores_nothing(nsp: Nsp, certs: Certs) -> None:
    async with client(nsp.address, None) as plain:
        with pytest.raises(TemporaryError, match="UNAVAILABLE"):
            await plain.register(target())
    assert await registered(nsp.address, certs.issue(ident(C.TAPA, "reader", trench=None))) == []


async def test_certificate_of_another_ca_is_refused(nsp: Nsp, certs: Certs, tmp_path: pathlib.Path) -> None:
    other = pki.Ca.create("other", now=time.time())
    foreign = certs.issue(ident(C.TAPA, "target-a-0", trench=None), ca=other)
    async with client(nsp.address, foreign) as c:
        with pytest.raises(TemporaryError, match="UNAVAILABLE"):
            await c.register(target())
    assert await registered(nsp.address, certs.issue(ident(C.TAPA, "reader", trench=None))) == []


async def test_expired_certificate_is_refused(nsp: Nsp, certs: Certs) -> None:
    expired = certs.issue(ident(C.TAPA, "target-a-0", trench=None), now=time.time() - 7200, lifetime=3600)
    async with client(nsp.address, expired) as c:
        with pytest.raises(TemporaryError, match="UNAVAILABLE"):
            await c.register(target())


async def test_certificate_without_an_identity_is_unauthenticated(nsp: Nsp, certs: Certs) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    now = time.time()
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(certs.ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(pki._utc(now - 60)).not_valid_after(pki._utc(now + 600))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("anything")]), critical=False)
            .sign(certs.ca._key, hashes.SHA256()))
    where = certs.root / "anonymous"
    pki.write_files(where, cert=cert.public_bytes(serialization.Encoding.PEM), ca=certs.ca.cert_pem,
                    key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    async with client(nsp.address, tlsmod.Tls(where)) as c:
        with pytest.raises(PermanentError, match="UNAUTHENTICATED"):
            await c.register(target())


# ----------------------------------------------------------------------- authorisation


async def test_another_pods_certificate_cannot_unregister_or_update_a_target_it_does_not_own(
        nsp: Nsp, certs: Certs) -> None:
    owner = certs.issue(ident(C.TAPA, "target-a-0", trench=None, node="node-1"))
    intruder = certs.issue(ident(C.TAPA, "target-a-1", trench=None, node="node-1"))
    async with client(nsp.address, owner) as mine:
        await mine.register(target())  # DISABLED first, as TAPA does
        await mine.register(target())  # then ENABLED
    async with client(nsp.address, intruder) as theirs:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*registered by another identity"):
            await theirs.unregister(target())
        with pytest.raises(PermanentError, match="PERMISSION_DENIED"):
            await theirs.register(target(status=model.TargetStatus.DISABLED))
    held = await registered(nsp.address, owner)
    assert [(t.ips, t.status) for t in held] == [(("172.16.1.2",), model.TargetStatus.ENABLED)]
    async with client(nsp.address, owner) as mine:
        await mine.unregister(target())
    assert await registered(nsp.address, owner) == []


async def test_components_change_only_their_own_type_and_trench(nsp: Nsp, certs: Certs) -> None:
    lb = certs.issue(ident(C.LB, "fe-lb-0"))
    other_trench_lb = certs.issue(ident(C.LB, "fe-lb-b", trench="trench-b"))
    tapa = certs.issue(ident(C.TAPA, "target-a-0", trench=None))
    async with client(nsp.address, lb) as c:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*only LOADBALANCER"):
            await c.register(target())
    async with client(nsp.address, other_trench_lb) as c:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*trench 'trench-b'"):
            await c.register(target(type_=model.TargetType.LOADBALANCER))
    async with client(nsp.address, tapa) as c:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*target.stream.conduit.trench 'evil'"):
            await c.register(target(trench="evil"))
    assert await registered(nsp.address, tapa) == []


async def test_the_owner_survives_an_nsp_restart(nsp: Nsp, certs: Certs) -> None:
    owner = certs.issue(ident(C.TAPA, "target-a-0", trench=None))
    intruder = certs.issue(ident(C.TAPA, "target-a-1", trench=None))
    async with client(nsp.address, owner) as mine:
        await mine.register(target())
    nsp.restart()
    async with client(nsp.address, intruder) as theirs:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED"):
            await theirs.unregister(target())
    assert len(await registered(nsp.address, owner)) == 1


async def test_ipam_allocates_only_for_the_callers_own_node(procs: Any, tmp_path: pathlib.Path, nsp: Nsp,
                                                              certs: Certs) -> None:
    base = tmp_path / "ipam"
    address, health = f"unix:{base}/ipam.sock", f"unix:{base}/health.sock"
    ipam_tls = certs.issue(ident(C.IPAM, "ipam-trench-a"))
    proc = procs.meridio("run", "ipam", "--listen-address", address, "--health-address", health,
                         "--trench-name", "trench-a", "--nsp-service", nsp.address,
                         "--datasource", str(base / "ipam.db"), env={tlsmod.DIR_ENV: str(ipam_tls.directory)},
                         name="ipam")
    nsp_support.wait_serving(health, proc)
    proxy = certs.issue(ident(C.PROXY, "proxy-a-node-1", node="node-1"))
    tapa = certs.issue(ident(C.TAPA, "target-a-0", trench=None, node="node-1"))
    mine = addressing.Ipam(address, trench="trench-a", conduit="conduit-a-1", node="node-1", families=(4,),
                           tls=proxy)
    foreign_node = addressing.Ipam(address, trench="trench-a", conduit="conduit-a-1", node="node-2", families=(4,),
                                   tls=proxy)
    not_a_proxy = addressing.Ipam(address, trench="trench-a", conduit="conduit-a-1", node="node-1", families=(4,),
                                  tls=tapa)
    try:
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*node 'node-1'"):
            await foreign_node.allocate("bridge")
        with pytest.raises(PermanentError, match="PERMISSION_DENIED.*only a proxy"):
            await not_a_proxy.allocate("bridge")
        (addr,) = await mine.allocate("bridge")
        assert addr.startswith("172.16.")
    finally:
        for c in (mine, foreign_node, not_a_proxy):
            await c.close()


# ----------------------------------------------------------------------- rotation


async def _eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (TemporaryError, grpc.aio.AioRpcError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_rotated_server_certificate_is_used_without_restart_and_old_connections_go_on(
        procs: Any, tmp_path: pathlib.Path, certs: Certs) -> None:
    server_dir = certs.root / "nsp"
    certs.issue(ident(C.NSP, "nsp-trench-a"), lifetime=6.0, directory=server_dir)
    started = time.time()
    nsp = Nsp(procs, tmp_path, tlsmod.Tls(server_dir))
    owner = certs.issue(ident(C.TAPA, "target-a-0", trench=None))
    async with client(nsp.address, owner) as old:
        watch = Reader(old.watch_targets(model.Target.make(status=model.TargetStatus.ANY)))
        assert await watch.next(5.0) == []
        certs.issue(ident(C.NSP, "nsp-trench-a"), lifetime=3600.0, directory=server_dir)  # the rotation
        await asyncio.sleep(max(0.0, started + 7.0 - time.time()))  # the first server certificate has expired
        # A new client only connects if the server now presents the new certificate ...
        async with client(nsp.address, certs.issue(ident(C.TAPA, "target-a-1", trench=None))) as new:
            await _eventually(lambda: new.register(target("172.16.1.9")))
        # ... and the watch opened before the rotation still receives what changed.
        seen = await watch.next(5.0)
        assert [t.ips for t in seen] == [("172.16.1.9",)]
    assert nsp.proc.poll() is None


async def test_client_with_an_expired_channel_certificate_reconnects_with_the_rotated_one(
        procs: Any, tmp_path: pathlib.Path, nsp: Nsp, certs: Certs) -> None:
    client_dir = certs.root / "tapa"
    certs.issue(ident(C.TAPA, "target-a-0", trench=None), lifetime=4.0, directory=client_dir)
    started = time.time()
    async with client(nsp.address, tlsmod.Tls(client_dir)) as c:
        watch = Reader(c.watch_targets(model.Target.make(status=model.TargetStatus.ANY)))
        assert await watch.next(5.0) == []
        certs.issue(ident(C.TAPA, "target-a-0", trench=None), lifetime=3600.0, directory=client_dir)
        await asyncio.sleep(max(0.0, started + 5.0 - time.time()))  # the certificate the channel was made with expired
        nsp.restart()  # the connection drops: reconnecting with the old certificate would fail forever
        assert await watch.next(15.0) == []  # the fresh list after reconnecting
        await c.register(target())
        assert [t.ips for t in await watch.next(5.0)] == [("172.16.1.2",)]
