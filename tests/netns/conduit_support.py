"""A conduit test bed: NSP, IPAM, load balancers, proxies and targets as real processes in namespaces.

Real: the ``meridio run nsp|ipam|lb|proxy|tapa`` and ``meridio example-target`` processes, the kernel
(namespaces, veths, bridge, nftables, addresses, rules, routes), gRPC over unix sockets in a short
directory under ``/tmp`` (NSP and IPAM are reached that way from every namespace), traffic from a client
namespace with ``meridio.runtime.local.traffic``. Fakes, named as such:

- :func:`FakeFrontendAnnouncer`: the FRONTEND registration of a frontend with external connectivity,
  which is all a real LB needs to unblock (BGP is not what these tests are about);
- :func:`FakeLbAnnouncer`: an LB pod's LOADBALANCER registration, for proxy tests that need no real LB
  (``add_lb(name)`` without ``real``; a real LB announces itself).

A :class:`LinkOwner` is a small process inside a target namespace that calls the link service through
:mod:`meridio.api.linkclient` and stays alive (it is the link's owner), as a TAPA would.

Usage (the ``conduit_env`` fixture; everything is stopped and removed at teardown)::

    def test_something(conduit_env):
        env = conduit_env(ip_family="dualstack")           # NSP + IPAM running (CONFIG by default)
        env.add_lb("lb-1", real=True)                      # LB daemon + external link to env.client()
        px = env.add_proxy("node-1", release_delay="1s")   # proxy namespace + process, bridge addressed
        t = env.add_target_pod("target-1", "node-1")       # example target + TAPA in a namespace
        t.target("open", "stream-a-i"); t.statuses()       # meridio target open; {"stream-a-i": "OPEN"}
        env.traffic(VIP4, 4000, nconn=400)                 # {"hosts": {"target-1": 400}, "lost": 0, ...}
        owner = env.link_owner(env.add_target("tgt-2"))    # or drive the link service directly
        link = owner.connect(px.socket, "target-2", "nsm-0")
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from meridio.kernel import bpf
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import pki
from tests.conftest import NetnsFactory, Procs, wait_for
from tests.integration import nsp_support

__all__ = [
    "CLIENT",
    "CONFIG",
    "TRENCH_VIP4",
    "VIP4",
    "VIP6",
    "Announcer",
    "ConduitEnv",
    "FakeFrontendAnnouncer",
    "FakeLbAnnouncer",
    "LbPod",
    "LinkOwner",
    "ProxyPod",
    "TargetPod",
    "addresses",
    "conduit_env",
    "default_route",
    "from_rules",
    "ip_json",
    "links",
    "rules",
    "settle",
]

VIP4, VIP6 = "203.0.113.1/32", "2001:db8::1/128"
CLIENT = {4: "192.0.2.1", 6: "2001:db8:e::1"}
TRENCH_VIP4 = "203.0.113.99/32"
"""A trench VIP that no flow of the conduit uses: on the proxy's rules, never on a target."""

# Meridio's e2e trench-a reduced to one conduit: two streams, flows on VIPs 203.0.113.1 and 2001:db8::1.
CONFIG = """\
trench: |
  name: trench-a
attractors: {items: []}
gateways: {items: []}
conduits: |
  items:
  - name: conduit-a-1
    trench: trench-a
streams: |
  items:
  - {name: stream-a-i, conduit: conduit-a-1, max-targets: 100}
  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}
flows: |
  items:
  - name: flow-a-tcp
    source-subnets: [0.0.0.0/0, 0:0:0:0:0:0:0:0/0]
    destination-port-ranges: ["4000"]
    source-port-ranges: ["0-65535"]
    protocols: [tcp]
    vips: [vip-a-1-v4, vip-a-1-v6]
    priority: 1
    stream: stream-a-i
  - name: flow-a-udp
    source-subnets: [0.0.0.0/0, 0:0:0:0:0:0:0:0/0]
    destination-port-ranges: ["4003"]
    source-port-ranges: ["0-65535"]
    protocols: [udp]
    vips: [vip-a-1-v4, vip-a-1-v6]
    priority: 1
    stream: stream-a-ii
vips: |
  items:
  - {name: vip-a-1-v4, address: 203.0.113.1/32, trench: trench-a}
  - {name: vip-a-1-v6, address: 2001:db8::1/128, trench: trench-a}
  - {name: vip-a-9-v4, address: 203.0.113.99/32, trench: trench-a}
"""

# --- kernel observation (ip -j) ----------------------------------------------------------------


def ip_json(ns: str, *args: str) -> Any:
    out = netnsmod.run(ns, ["ip", "-j", *args], check=False)
    if out.returncode != 0:
        return []  # e.g. "FIB table does not exist" (ip prints a lone "[" then)
    return json.loads(out.stdout or "[]")


def links(ns: str) -> dict[str, dict[str, Any]]:
    """Interfaces of ``ns`` by name (``ip -j -d link``)."""
    return {link["ifname"]: link for link in ip_json(ns, "-d", "link", "show")}


def addresses(ns: str, dev: str) -> set[str]:
    """``ip/len`` on ``dev``, link-local excluded."""
    out = set()
    for link in ip_json(ns, "addr", "show", "dev", dev):
        for a in link.get("addr_info", []):
            if not a["local"].startswith("fe80:"):
                out.add(f"{ipaddress.ip_address(a['local'])}/{a['prefixlen']}")
    return out


def rules(ns: str, version: int) -> list[dict[str, Any]]:
    return ip_json(ns, f"-{version}", "rule", "show")  # type: ignore[no-any-return]


def from_rules(ns: str, version: int, table: int | str) -> set[str]:
    """Source prefixes of the rules looking up ``table``."""
    out = set()
    for r in rules(ns, version):
        if str(r.get("table")) == str(table) and "src" in r:
            out.add(str(ipaddress.ip_network(f"{r['src']}/{r.get('srclen', 32 if version == 4 else 128)}")))
    return out


def default_route(ns: str, version: int, table: int | str) -> list[str]:
    """Sorted next hops of the default route in ``table`` ([] if none)."""
    for r in ip_json(ns, f"-{version}", "route", "show", "table", str(table)):
        if r.get("dst") == "default":
            hops = [h["gateway"] for h in r.get("nexthops", [])] or [r["gateway"]]
            return sorted(hops)
    return []


# --- processes ---------------------------------------------------------------------------------


def _health_serving(address: str, services: tuple[str, ...] = ("",)) -> bool:
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            return all(stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=0.5).status
                       == health_pb2.HealthCheckResponse.SERVING for s in services)
        except grpc.RpcError:
            return False


ANNOUNCER = r"""
import asyncio, json, os, signal, sys
from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.common import tls as tlsmod
nsp, refresh, spec = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
stream = None
if spec.get("conduit"):
    stream = model.Stream("", model.Conduit(spec["conduit"], model.Trench(spec["trench"])))
target = model.Target.make(ips=spec.get("ips", []), type=model.TargetType[spec["type"]],
                           status=model.TargetStatus.ENABLED, context=spec["context"], stream=stream)
async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tls = tlsmod.from_settings(os.environ.get(tlsmod.DIR_ENV, ""), os.environ.get(tlsmod.INSECURE_ENV) == "true")
    client = NspClient(nsp, tls=tls)
    first = True
    while not stop.is_set():
        try:
            await client.register(target)
            if first:
                await client.register(target)  # NSP stores a new target DISABLED: update it to ENABLED
                first = False
                print("registered", flush=True)
        except Exception as exc:
            print("register failed", exc, flush=True)
        try:
            await asyncio.wait_for(stop.wait(), refresh)
        except asyncio.TimeoutError:
            pass
    try:
        await client.unregister(target)
    finally:
        await client.close()
asyncio.run(main())
"""


@dataclasses.dataclass
class Announcer:
    """FAKE announcement (see :class:`FakeLbAnnouncer` and :class:`FakeFrontendAnnouncer`): a process
    registering one target in NSP, refreshing it, unregistering it on SIGTERM."""

    procs: Procs
    nsp: str
    spec: dict[str, Any]
    refresh: str = "5"
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.procs.start([sys.executable, "-c", ANNOUNCER, self.nsp, self.refresh,
                                      json.dumps(self.spec)], env=self.env or None,
                                     name=f"announce-{self.spec['type'].lower()}")
        wait_for(lambda: "registered" in self.procs.output(self.proc), 15, message=f"{self.spec['type']} announced")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


def FakeLbAnnouncer(procs: Procs, nsp: str, *, identifier: str, netns: str, ifprefix: str, trench: str,
                    conduit: str, refresh: str = "5", env: dict[str, str] | None = None) -> Announcer:
    """FAKE: stands in for the LB daemon's own LOADBALANCER announcement (exactly what it registers)."""
    return Announcer(procs, nsp, {"type": "LOADBALANCER", "trench": trench, "conduit": conduit,
                                  "context": {"identifier": identifier, "netns": netns, "ifprefix": ifprefix}},
                     refresh, env or {})


def FakeFrontendAnnouncer(procs: Procs, nsp: str, *, hostname: str, refresh: str = "5",
                          env: dict[str, str] | None = None) -> Announcer:
    """FAKE: stands in for a frontend with external connectivity (its FRONTEND target), which is all the
    LB needs to unblock; the conduit tests do not exercise BGP (the frontend's own tests do)."""
    return Announcer(procs, nsp, {"type": "FRONTEND", "ips": [hostname], "context": {"identifier": hostname}},
                     refresh, env or {})


@dataclasses.dataclass
class LbPod:
    name: str
    ns: str
    ifprefix: str
    announcer: Announcer
    """The LB's announcement: the fake one, or the FRONTEND fake that unblocks a real LB."""
    lb_proc: subprocess.Popen[bytes] | None = None
    lb_args: list[str] = dataclasses.field(default_factory=list)

    def interfaces(self) -> dict[str, dict[str, Any]]:
        """The LB-side ends of proxy links in this pod (names starting with the prefix)."""
        return {n: link for n, link in links(self.ns).items() if n.startswith(self.ifprefix + "-")}


@dataclasses.dataclass
class ProxyPod:
    env: ConduitEnv
    node: str
    ns: str
    socket: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.env.procs.meridio(*self.args, ns=self.ns, name=f"proxy-{self.node}",
                                           env=self.env.tls_env(idm.Component.PROXY, f"proxy-{self.node}",
                                                                node=self.node))
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            return os.path.exists(self.socket) and len(addresses(self.ns, "bridge0")) == len(self.env.families)
        wait_for(ready, timeout, message=f"proxy {self.node} serving with an addressed bridge")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        return self.env.procs.stop(self.proc, sig)

    def output(self) -> str:
        return self.env.procs.output(self.proc) if self.proc is not None else ""

    def bridge_ips(self) -> set[str]:
        return {a.split("/")[0] for a in addresses(self.ns, "bridge0")}

    def ports(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {n: link for n, link in links(self.ns).items() if n.startswith(prefix)}


def _lb_announces_itself() -> bool:
    """Whether ``meridio run lb`` registers its own LOADBALANCER target (it has the ``netns`` setting)."""
    try:
        from meridio.loadbalancer import app
    except ImportError:
        return False
    return "netns" in {f.name for f in dataclasses.fields(app.Settings)}


@dataclasses.dataclass
class TargetPod:
    """A target namespace with ``meridio example-target`` and (optionally) a TAPA."""

    env: ConduitEnv
    name: str
    node: str
    ns: str
    socket: str
    example: subprocess.Popen[bytes] | None = None
    tapa: subprocess.Popen[bytes] | None = None
    tapa_args: list[str] = dataclasses.field(default_factory=list)

    def start_tapa(self) -> None:
        self.tapa = self.env.procs.meridio(*self.tapa_args, ns=self.ns, name=f"tapa-{self.name}",
                                           env=self.env.tls_env(idm.Component.TAPA, self.name, trench=None,
                                                                node=self.node))
        wait_for(lambda: os.path.exists(self.socket), 15, message=f"TAPA of {self.name} serving")

    def target(self, action: str, stream: str, conduit: str | None = None, trench: str | None = None) -> None:
        """``meridio target open|close`` through this pod's TAPA."""
        netnsmod.run(self.ns, [sys.executable, "-m", "meridio.cli.main", "target", action,
                               "-t", trench or self.env.trench, "-c", conduit or self.env.conduit, "-s", stream,
                               "--socket", self.socket])

    def statuses(self) -> dict[str, str]:
        """``stream -> STATUS`` as the TAPA reports them now."""
        import grpc as _grpc

        from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
        with _grpc.insecure_channel(f"unix:{self.socket}") as ch:
            call = tap_pb2_grpc.TapStub(ch).Watch(tap_pb2.Stream(), timeout=5)
            first = next(iter(call))
            call.cancel()
        return {s.stream.name: tap_pb2.StreamStatus.Status.Name(s.status) for s in first.streamStatus}


OWNER = r"""
import asyncio, json, sys
from meridio.api import linkclient
from meridio.api.link import link_from_pb
from meridio.api.pb.meridio.proxy.v1 import link_pb2, link_pb2_grpc
from meridio.common import grpcutil
import dataclasses

async def connect_with(sock, target_id, ifname, token):
    path, _ = linkclient.socket_paths(sock)
    async with grpcutil.insecure_channel(f"unix:{path}") as ch:
        r = await link_pb2_grpc.LinkServiceStub(ch).Connect(link_pb2.ConnectRequest(
            target_id=target_id, credential=token, interface_name=ifname), timeout=15)
        return dataclasses.asdict(link_from_pb(r))

async def handle(cmd):
    op = cmd["op"]
    if op == "connect":
        return dataclasses.asdict(await linkclient.connect(cmd["socket"], cmd["target_id"], cmd["ifname"]))
    if op == "disconnect":
        await linkclient.disconnect(cmd["socket"], cmd["target_id"])
        return None
    if op == "credential":
        return await linkclient.credential(linkclient.socket_paths(cmd["socket"])[1])
    if op == "connect_tls":
        import pathlib
        from meridio.common import tls as tlsmod
        tls = tlsmod.Tls(pathlib.Path(cmd["tls"]))
        return dataclasses.asdict(await linkclient.connect(cmd["socket"], cmd["target_id"], cmd["ifname"], tls=tls))
    if op == "connect_with":
        return await connect_with(cmd["socket"], cmd["target_id"], cmd["ifname"], cmd["token"])
    if op == "watch_first":
        async for link in linkclient.watch(cmd["socket"], cmd["target_id"]):
            return dataclasses.asdict(link)
    raise ValueError(op)

for line in sys.stdin:
    cmd = json.loads(line)
    try:
        out = {"ok": True, "value": asyncio.run(handle(cmd))}
    except Exception as exc:
        code = getattr(exc, "status_code", None) or getattr(exc, "code", None)
        code = code() if callable(code) else code
        out = {"ok": False, "error": str(exc), "kind": type(exc).__name__, "code": code.name if code else None}
    print(json.dumps(out), flush=True)
"""


class LinkOwner:
    """A process inside a target namespace that talks to the link service and stays alive."""

    def __init__(self, procs: Procs, ns: str) -> None:
        self.ns = ns
        self.proc = subprocess.Popen(netnsmod.exec_argv(ns, [sys.executable, "-c", OWNER]), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        procs.started.append(self.proc)  # type: ignore[arg-type]  # stopped by pid at teardown

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the link owner process died"
        return json.loads(line)  # type: ignore[no-any-return]

    def connect(self, socket: str, target_id: str, ifname: str = "nsm-0") -> dict[str, Any]:
        """Connect; returns the Link as a dict (fails the test on an error)."""
        reply = self.call(op="connect", socket=socket, target_id=target_id, ifname=ifname)
        assert reply["ok"], reply
        return reply["value"]  # type: ignore[no-any-return]

    def disconnect(self, socket: str, target_id: str) -> dict[str, Any]:
        return self.call(op="disconnect", socket=socket, target_id=target_id)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


class ConduitEnv:
    def __init__(self, netns: NetnsFactory, procs: Procs, tmp_path: pathlib.Path, *, config: str = CONFIG,
                 ip_family: str = "dualstack", entry_timeout: str = "60s", trench: str = "trench-a",
                 conduit: str = "conduit-a-1", tls: bool = False) -> None:
        """``tls``: every component runs with mutual TLS, certificates from a CA of this bed (as the local
        runtime's); else plain gRPC (``MERIDIO_TLS_INSECURE``, what :class:`~tests.conftest.Procs` sets)."""
        self.netns, self.procs, self.tmp_path = netns, procs, tmp_path
        self.trench, self.conduit, self.ip_family = trench, conduit, ip_family
        self.families = {"ipv4": (4,), "ipv6": (6,), "dualstack": (4, 6)}[ip_family]
        # unix socket paths must stay under 108 bytes: a short private directory, removed at teardown
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="mc", dir="/tmp"))
        self.ca = pki.Ca.create("conduit-bed", now=time.time()) if tls else None
        self.nsp = self._start_nsp(config, entry_timeout)
        self.ipam_proc: subprocess.Popen[bytes] | None = None
        self.ipam_address = self._start_ipam()
        self.lbs: dict[str, LbPod] = {}
        self.proxies: dict[str, ProxyPod] = {}
        self.targets: dict[str, TargetPod] = {}
        self._client: str | None = None
        self._lb_ext: dict[str, tuple[str, str]] = {}

    def tls_env(self, component: idm.Component, pod: str, *, trench: str | None | bool = True,
                node: str | None = None) -> dict[str, str] | None:
        """The environment that gives a process its own certificate (``None`` without TLS); ``trench``:
        ``True`` = this bed's trench, ``None`` = none (a TAPA's identity names no trench)."""
        if self.ca is None:
            return None
        who = idm.Identity(cluster="conduit-bed", component=component, pod=pod,
                           trench=self.trench if trench is True else (trench or None), node=node)
        directory = self.base / "tls" / f"{component.value}-{pod}"
        cert, key = self.ca.issue(who, now=time.time())
        pki.write_files(directory, cert=cert, key=key, ca=self.ca.cert_pem)
        return {tlsmod.DIR_ENV: str(directory)}

    @property
    def nsp_address(self) -> str:
        return self.nsp.address

    def _start_nsp(self, config: str, entry_timeout: str) -> nsp_support.NspProcess:
        """``meridio run nsp`` listening on ``unix:<base>/nsp.sock`` (restartable, config rewritable)."""
        data = self.tmp_path / "nsp"
        data.mkdir(parents=True, exist_ok=True)
        config_file, datasource = data / "configuration.yaml", data / "data" / "registry.db"
        nsp_support.write_config(config_file, config)
        address = f"unix://{self.base}/nsp.sock"
        health = f"unix://{self.base}/nsp-health.sock"
        args = ["run", "nsp", "--listen-address", address, "--config-file", str(config_file),
                "--datasource", str(datasource), "--entry-timeout", entry_timeout, "--log-level", "DEBUG",
                "--health-address", health]
        env = self.tls_env(idm.Component.NSP, "nsp")
        proc = self.procs.meridio(*args, name="nsp", env=env)
        nsp_support.wait_serving(health, proc)
        return nsp_support.NspProcess(self.procs, address, 0, config_file, datasource, args, None, proc, env, health)

    def _start_ipam(self) -> str:
        address, health = f"unix://{self.base}/ipam.sock", f"unix://{self.base}/ipam-health.sock"
        self.ipam_proc = proc = self.procs.meridio("run", "ipam", "--listen-address", address,
                                  "--trench-name", self.trench, "--nsp-service", self.nsp_address,
                                  "--datasource", str(self.tmp_path / "ipam" / "registry.db"),
                                  "--ip-family", self.ip_family, "--log-level", "DEBUG",
                                  "--health-address", health, name="ipam",
                                  env=self.tls_env(idm.Component.IPAM, "ipam"))
        wait_for(lambda: proc.poll() is None and _health_serving(health, ("Startup", "Liveness")), 20,
                 message="IPAM serving")
        return address

    def write_config(self, text: str) -> None:
        self.nsp.write_config(text)

    def add_lb(self, name: str, *, real: bool = False, ifprefix: str | None = None, refresh: str = "5",
               extra: tuple[str, ...] = (), before_start: Callable[[str], None] | None = None) -> LbPod:
        """An LB pod namespace. ``real``: the LB daemon runs in it (unblocked by a fake frontend
        announcement) and gets an external link to the client namespace; else only a fake announcement.
        ``before_start(ns)`` wires the namespace before the daemon starts; ``extra``: more LB arguments."""
        ns = self.netns(name)
        if before_start is not None:
            before_start(ns)
        prefix = ifprefix or self.conduit[:10]
        if not real:
            announcer = FakeLbAnnouncer(self.procs, self.nsp_address, identifier=name, netns=ns, ifprefix=prefix,
                                        trench=self.trench, conduit=self.conduit, refresh=refresh,
                                        env=self.tls_env(idm.Component.LB, name))
            announcer.start()
            self.lbs[name] = LbPod(name, ns, prefix, announcer)
            return self.lbs[name]
        pod = LbPod(name, ns, prefix, FakeFrontendAnnouncer(self.procs, self.nsp_address, hostname=name,
                                                            env=self.tls_env(idm.Component.FRONTEND, name)))
        self._external_link(pod, len(self.lbs) + 10)
        pod.lb_args = ["run", "lb", "--conduit-name", self.conduit, "--trench-name", self.trench,
                       "--nsp-service", self.nsp_address, "--socket", f"unix://{self.base}/lb-{name}.sock",
                       "--hostname", name, "--target-interface-prefix", prefix, "--log-level", "DEBUG", *extra]
        if _lb_announces_itself():
            pod.lb_args += ["--netns", ns]
        pins = self.base / f"bpf-{name}"  # the fast path's pins, on a bpffs outside the daemon's mount namespace
        bpf.mount_bpffs(pins)
        pod.lb_proc = self.procs.meridio(*pod.lb_args, ns=ns, name=f"lb-{name}",
                                         env={**(self.tls_env(idm.Component.LB, name) or {}),
                                              "NSM_FASTPATH_BPFFS": str(pins)})
        pod.announcer.start()
        if not _lb_announces_itself():  # until the LB daemon announces itself: its stand-in
            FakeLbAnnouncer(self.procs, self.nsp_address, identifier=name, netns=ns, ifprefix=prefix,
                            trench=self.trench, conduit=self.conduit, refresh=refresh,
                            env=self.tls_env(idm.Component.LB, name)).start()
        self.lbs[name] = pod
        return pod

    def client(self) -> str:
        """The client namespace: bridge ``ext0`` to every real LB (192.0.2.1, 2001:db8:e::1), VIPs routed
        over all of them (ECMP, L4 hash)."""
        if self._client is None:
            self._client = self.netns("client")
            run = lambda *a: netnsmod.run(self._client, list(a))
            run("ip", "link", "add", "ext0", "type", "bridge")
            run("ip", "link", "set", "ext0", "up")
            run("ip", "addr", "add", f"{CLIENT[4]}/24", "dev", "ext0")
            run("ip", "addr", "add", f"{CLIENT[6]}/64", "dev", "ext0", "nodad")
            run("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1")
        return self._client

    def _external_link(self, pod: LbPod, n: int) -> None:
        client = self.client()
        port = f"ext-{pod.name}"[:15]
        subprocess.run(["ip", "link", "add", port, "netns", client, "type", "veth", "peer", "name", "ext0",
                        "netns", pod.ns], check=True)
        netnsmod.run(client, ["ip", "link", "set", port, "master", "ext0", "up"])
        for cmd in (["ip", "addr", "add", f"192.0.2.{n}/24", "dev", "ext0"],
                    ["ip", "addr", "add", f"2001:db8:e::{n:x}/64", "dev", "ext0", "nodad"],
                    ["ip", "link", "set", "ext0", "up"],
                    ["ip", "route", "add", "default", "via", CLIENT[4]],
                    ["ip", "-6", "route", "add", "default", "via", CLIENT[6]]):
            netnsmod.run(pod.ns, cmd)
        self._lb_ext[pod.name] = (f"192.0.2.{n}", f"2001:db8:e::{n:x}")
        for version, vips in ((4, ("203.0.113.0/24",)), (6, ("2001:db8::/64",))):
            hops = [f"nexthop via {a[0 if version == 4 else 1]}" for a in self._lb_ext.values()]
            for vip in vips:
                netnsmod.run(client, ["ip", f"-{version}", "route", "replace", vip, *" ".join(hops).split()])

    def add_target_pod(self, name: str, node: str, *, tapa: bool = True,
                       extra_tapa: tuple[str, ...] = ()) -> TargetPod:
        """A target namespace running ``meridio example-target`` (answers its name) and, with ``tapa``, a
        TAPA whose proxy socket template points at this bed's proxies."""
        ns = self.netns(name)
        pod = TargetPod(self, name, node, ns, str(self.base / f"tapa-{name}.sock"))
        pod.example = self.procs.meridio("example-target", "--name", name, ns=ns, name=f"target-{name}")
        if tapa:
            pod.tapa_args = ["run", "tapa", "--name", name, "--node", node, "--socket", f"unix://{pod.socket}",
                             "--nsp-service", self.nsp_address,
                             "--proxy-socket", str(self.base / "proxy" / "{conduit}" / "{node}" / "link.sock"),
                             "--log-level", "DEBUG", *extra_tapa]
            pod.start_tapa()
        self.targets[name] = pod
        return pod

    def traffic(self, vip: str, port: int, *, nconn: int = 400, udp: bool = False, timeout: float = 30.0
                ) -> dict[str, Any]:
        """mconnect from the client namespace (``meridio.runtime.local.traffic``): ``hosts`` = target
        name -> connections, ``lost``, ``errors``."""
        args = [sys.executable, "-m", "meridio.runtime.local.traffic", "--address", vip.split("/")[0],
                "--port", str(port), "--nconn", str(nconn), "--timeout", str(timeout)] + (["--udp"] if udp else [])
        done = netnsmod.run(self.client(), args, timeout=timeout + 30)
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def add_proxy(self, node: str, *, release_delay: str = "20s", orphan_timeout: str = "30s",
                  mtu: int = 1500, extra: tuple[str, ...] = (),
                  before_start: Callable[[str], None] | None = None) -> ProxyPod:
        ns = self.netns(f"px-{node}")
        if before_start is not None:
            before_start(ns)
        sock = str(self.base / "proxy" / self.conduit / node / "link.sock")
        args = ["run", "proxy", "--conduit", self.conduit, "--trench", self.trench, "--host", node,
                "--nsp-service", self.nsp_address, "--ipam-service", self.ipam_address,
                "--ip-family", self.ip_family, "--mtu", str(mtu), "--ip-release-delay", release_delay,
                "--link-orphan-timeout", orphan_timeout, "--link-socket", sock, "--check-interval", "200ms",
                "--log-level", "DEBUG", *extra]
        pod = ProxyPod(self, node, ns, sock, args)
        pod.start()
        self.proxies[node] = pod
        return pod

    def add_target(self, name: str) -> str:
        return self.netns(name)

    def link_owner(self, ns: str) -> LinkOwner:
        return LinkOwner(self.procs, ns)

    def close(self) -> None:
        self.procs.cleanup()
        for mount in bpf.bpffs_under(self.base):
            bpf.unmount_bpffs(mount)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def conduit_env(netns: NetnsFactory, procs: Procs, tmp_path: pathlib.Path) -> Iterator[Callable[..., ConduitEnv]]:
    envs: list[ConduitEnv] = []

    def make(**kw: Any) -> ConduitEnv:
        env = ConduitEnv(netns, procs, tmp_path, **kw)
        envs.append(env)
        return env

    try:
        yield make
    finally:
        for env in envs:
            env.close()


def settle(seconds: float = 0.5) -> None:
    """Give asynchronous watchers a moment where a test checks that something does NOT happen."""
    time.sleep(seconds)
