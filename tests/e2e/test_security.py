"""Mutual TLS in the running default environment (issue 15's first attack, and rotation under traffic).

Before mutual TLS, any process that could reach an NSP registered a target and took VIP traffic (42 of
200 connections arrived in the tester's namespace). Here the same registration, plain or with a
certificate from another CA, is refused; every component runs with its own certificate; and
``meridio rotate-certificates`` under long-lived traffic loses no connection, after which servers
present the new certificates and new connections (a target scaled in) work with them.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import socket
import ssl
import tempfile
import time

import pytest
from cryptography import x509

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from meridio.common.retry import Backoff, TemporaryError
from meridio.runtime.local import client, pki
from meridio.runtime.local.layout import StateLayout
from tests.e2e.framework import E2E, VIP1, wait_baseline


def _layout(e2e: E2E) -> StateLayout:
    return client.layout_for(e2e.env.name)


def _registered(address: str, tls: tlsmod.Tls) -> list[model.Target]:
    async def read() -> list[model.Target]:
        async with NspClient(address, tls=tls, call_timeout=3.0) as c:
            watch = c.watch_targets(model.Target.make(status=model.TargetStatus.ANY))
            return await asyncio.wait_for(watch.__anext__(), 10.0)
    return asyncio.run(read())


def _register(address: str, tls: tlsmod.Tls | None, target: model.Target) -> None:
    async def go() -> None:
        async with NspClient(address, tls=tls, call_timeout=3.0,
                             backoff=lambda: Backoff(initial=0.2, cap=0.5)) as c:
            await c.register(target)
    asyncio.run(go())


def _intruder(ip: str) -> model.Target:
    stream = model.Stream("stream-a-i", model.Conduit("conduit-a-1", model.Trench("trench-a")), 100)
    return model.Target.make(ips=[ip], context={"identifier": "99"}, status=model.TargetStatus.ENABLED,
                             stream=stream)


def _handshake(socket_path: pathlib.Path, tls: tlsmod.Tls) -> tuple[int, str | None]:
    """(serial number of the certificate a server presents, TLS version) on a fresh handshake (HTTP/2 over TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(tls.directory / tlsmod.CA_FILE))
    ctx.load_cert_chain(str(tls.directory / tlsmod.CERT_FILE), str(tls.directory / tlsmod.KEY_FILE))
    ctx.set_alpn_protocols(["h2"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(5.0)
        raw.connect(str(socket_path))
        with ctx.wrap_socket(raw) as s:
            der, version = s.getpeercert(binary_form=True), s.version()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number, version


def _serial_on_disk(directory: pathlib.Path) -> int:
    return x509.load_pem_x509_certificate((directory / tlsmod.CERT_FILE).read_bytes()).serial_number


def test_every_component_runs_with_its_own_certificate(e2e: E2E) -> None:
    checked = 0
    for p in e2e.status()["processes"]:
        if p["pid"] is None:
            continue
        environ = dict(item.split("=", 1) for item in
                       pathlib.Path(f"/proc/{p['pid']}/environ").read_text().split("\0") if "=" in item)
        if tlsmod.INSECURE_ENV not in environ:
            continue  # BIRD, the traffic generators: no gRPC
        assert environ[tlsmod.INSECURE_ENV] == "false", p["name"]
        who = idm.from_certificate_pem((pathlib.Path(environ[tlsmod.DIR_ENV]) / tlsmod.CERT_FILE).read_bytes())
        assert who.pod == p["pod"] and who.cluster == e2e.env.name, (p["name"], who.uri)
        checked += 1
    assert checked >= 20, f"only {checked} component processes found"


def test_a_registration_without_a_valid_certificate_is_refused_and_takes_no_traffic(e2e: E2E) -> None:
    layout = _layout(e2e)
    nsp = f"unix:{layout.nsp_socket('trench-a')}"
    runtime = tlsmod.Tls(layout.runtime_tls)
    before = _registered(nsp, runtime)
    with pytest.raises(TemporaryError, match="UNAVAILABLE"):
        _register(nsp, None, _intruder("172.16.250.2"))
    with tempfile.TemporaryDirectory() as tmp:
        other = pki.Ca.create("intruder", now=time.time())
        who = idm.Identity(cluster=e2e.env.name, component=idm.Component.TAPA, pod="target-a-0")
        cert, key = other.issue(who, now=time.time())
        pki.write_files(pathlib.Path(tmp), cert=cert, key=key, ca=other.cert_pem)
        with pytest.raises(TemporaryError, match="UNAVAILABLE"):
            _register(nsp, tlsmod.Tls(pathlib.Path(tmp)), _intruder("172.16.250.3"))
    after = _registered(nsp, runtime)
    assert sorted(map(str, after)) == sorted(map(str, before))
    e2e.expect_traffic("trench-a", VIP1[4], 4000, 4)


def test_certificate_rotation_under_traffic_loses_no_connection(e2e: E2E) -> None:
    layout = _layout(e2e)
    runtime = tlsmod.Tls(layout.runtime_tls)
    nsp_dir = layout.pod_dir("nsp-trench-a") / "tls" / "nsp"
    old, version = _handshake(layout.nsp_socket("trench-a"), runtime)
    assert old == _serial_on_disk(nsp_dir) and version == "TLSv1.3"
    e2e.expect_traffic("trench-a", VIP1[4], 4000, 4)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(e2e.traffic, "trench-a", VIP1[4], 4000, nconn=50, duration=15)
        time.sleep(4)
        out = e2e.meridio("rotate-certificates").stdout
        report = run.result()
    assert "certificates issued anew" in out, out
    assert report["lost"] == 0 and len(report["hosts"]) == 4, report
    assert (report["failed_connects"], report["resets"], report["timeouts"], report["lost_messages"]) == (0, 0, 0, 0), \
        report
    new = _serial_on_disk(nsp_dir)
    assert new != old
    assert _handshake(layout.nsp_socket("trench-a"), runtime)[0] == new
    # New connections made with the new certificates: a new target registers, takes traffic, leaves.
    e2e.scale("target-a", 5)
    try:
        e2e.expect_traffic("trench-a", VIP1[4], 4000, 5)
    finally:
        e2e.scale("target-a", 4)
    wait_baseline(e2e)
