"""``meridio run lb`` as a real process in the LB namespace, fed by a real NSP process.

Real: the NSP (``meridio run nsp``, on a unix socket reachable from every namespace) with a config
file, targets registered through ``NspClient``, the LB daemon in its namespace programming nftables and
policy routing, TCP/UDP traffic from the client namespace, the availability service over its unix
socket. Nothing is faked.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from meridio.api import model
from meridio.api.nspclient import NspClient
from meridio.api.pb.loadbalancer.v1 import stream_pb2_grpc
from meridio.common.retry import TemporaryError
from meridio.kernel import netns as netnsmod
from tests.conftest import eventually
from tests.integration.nsp_support import wait_serving, write_config
from tests.netns import lb_topology as lbt

HOST = "lb-a"
CONDUIT = model.Conduit("conduit-a", model.Trench("trench-a"))
STREAM = model.Stream("stream-a", CONDUIT, 100)

CONFIG = """\
trench: |
  name: trench-a
conduits: |
  items:
  - name: conduit-a
    trench: trench-a
streams: |
  items:
  - {name: stream-a, conduit: conduit-a, max-targets: 100}
flows: |
  items:
  - name: flow-all
    source-subnets: ["0.0.0.0/0", "::/0"]
    destination-port-ranges: ["5000", "4100", "7000"]
    source-port-ranges: ["any"]
    protocols: [tcp, udp]
    vips: [vip-a-v4, vip-a-v6]
    priority: 1
    stream: stream-a
%(extra_flows)s
vips: |
  items:
  - {name: vip-a-v4, address: 203.0.113.10/32, trench: trench-a}
  - {name: vip-a-v6, address: 2001:db8:f::10/128, trench: trench-a}
attractors: |
  items: []
gateways: |
  items: []
"""


def config(extra_flows: str = "") -> str:
    return CONFIG % {"extra_flows": extra_flows}


@dataclasses.dataclass
class Nsp:
    """The NSP process on a unix socket in the shared filesystem (reachable from every namespace)."""

    procs: Any
    base: pathlib.Path
    proc: Any = None

    @property
    def address(self) -> str:
        return f"unix:{self.base / 'nsp.sock'}"

    @property
    def config_file(self) -> pathlib.Path:
        return self.base / "configuration.yaml"

    def write_config(self, text: str) -> None:
        write_config(self.config_file, text)

    def start(self) -> None:
        self.proc = self.procs.meridio(
            "run", "nsp", "--listen-address", self.address, "--config-file", str(self.config_file),
            "--datasource", str(self.base / "registry.db"), "--config-poll-interval", "100ms",
            "--log-level", "DEBUG", name="nsp")
        wait_serving(self.address, self.proc)


def start_nsp(procs: Any, base: pathlib.Path) -> Nsp:
    nsp = Nsp(procs, base)
    nsp.write_config(config())
    nsp.start()
    return nsp


@dataclasses.dataclass
class Env:
    topo: lbt.LbTopology
    procs: Any
    nsp: Nsp
    socket: str
    client: NspClient
    bpffs: pathlib.Path
    lb: Any = None

    def start_lb(self, *extra: str) -> Any:
        """The daemon with its fast path pinned on this test's bpffs (mounted outside its ``ip netns exec``,
        as the runtime does, so a restarted daemon finds the pins)."""
        self.lb = self.procs.meridio(
            "run", "lb", "--nsp-service", self.nsp.address, "--conduit-name", "conduit-a", "--trench-name",
            "trench-a", "--socket", self.socket, "--hostname", HOST, "--target-interface-prefix",
            self.topo.target_prefix, "--check-interval", "200ms", "--log-level", "DEBUG", *extra,
            ns=self.topo.lb, name="lb", env={"NSM_FASTPATH_BPFFS": str(self.bpffs)})
        return self.lb

    def lb_log(self) -> list[dict[str, Any]]:
        lines = self.procs.output(self.lb).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def programmed(self) -> list[dict[str, Any]]:
        return [e for e in self.lb_log() if e["message"] == "targetsProgrammed"]

    async def register(self, *targets: model.Target) -> None:
        for target in targets:  # an unknown target is stored DISABLED first: register twice
            await self.client.register(target)
            await self.client.register(target)

    def availability(self) -> list[dict[str, str]]:
        with grpc.insecure_channel(self.socket) as channel:
            call = stub_watch(channel)
            first = next(iter(call))
            call.cancel()
            return [dict(t.context) for t in first.targets]

    def fastpath_log(self) -> list[dict[str, Any]]:
        return [e for e in self.lb_log() if e["message"] == "fastpathStarted"]

    def state(self) -> str:
        """What the LB programmed (without counter values): nft table, fwmark rules, target routes, the fast
        path's tc filter (its program id: the same program, not a reload)."""
        out = [netnsmod.run(self.topo.lb, ["nft", "-a", "-s", "list", "table", "inet", "meridio-lb"]).stdout,
               netnsmod.run(self.topo.lb, ["tc", "filter", "show", "dev", "ext0", "ingress"]).stdout]
        for family in ("-4", "-6"):
            out.append(netnsmod.run(self.topo.lb, ["ip", family, "rule", "show"]).stdout)
            out.append(netnsmod.run(self.topo.lb, ["ip", family, "route", "show", "table", "all"]).stdout)
        return "\n".join(out)


def stub_watch(channel: grpc.Channel) -> Any:
    return stream_pb2_grpc.StreamAvailabilityServiceStub(channel).Watch(empty_pb2.Empty(), timeout=5)


def target(i: int, identifier: int | None = None) -> model.Target:
    return model.Target.make([f"{lbt.target_ip(i, 4)}/24", f"{lbt.target_ip(i, 6)}/64"],
                             {"identifier": str(identifier or i)}, stream=STREAM)


FRONTEND = model.Target.make([HOST], {"identifier": HOST}, type=model.TargetType.FRONTEND)


@pytest.fixture
async def env(netns: Any, procs: Any, tmp_path: pathlib.Path, bpffs: Any) -> AsyncIterator[Env]:
    topo = lbt.build(netns, targets=3)
    lbt.start_responders(procs, topo, [5000, 7000], echo_ports=[4100])
    nsp = start_nsp(procs, tmp_path)
    client = NspClient(nsp.address)
    try:
        yield Env(topo, procs, nsp, f"unix:{tmp_path / 'lb.sock'}", client, bpffs.path)
    finally:
        await client.close()


async def eventually_call(call: Any, timeout: float = 10.0, message: str = "call") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except TemporaryError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def names(env: Env, version: int, count: int = 100, start: int = 20000) -> list[str | None]:
    return lbt.tcp_names(env.topo.client, lbt.VIPS[version][0], 5000, range(start, start + count), timeout=1.0)


async def test_the_daemon_forwards_to_the_targets_the_nsp_knows(env: Env) -> None:
    await env.register(FRONTEND, target(1), target(2), target(3))
    env.start_lb()
    await eventually(lambda: any(p["active"].get("stream-a") == [1, 2, 3] for p in env.programmed()),
                     message="the three targets programmed")
    assert env.availability() == [{"identifier": HOST}]
    for version in (4, 6):
        got = names(env, version, 200)
        assert None not in got and set(got) == {"t1", "t2", "t3"}
    await env.client.unregister(target(2))
    await eventually(lambda: any(p["active"].get("stream-a") == [1, 3] for p in env.programmed()),
                     message="target 2 removed")
    assert set(names(env, 4, 100)) == {"t1", "t3"}


async def test_without_its_frontend_the_lb_drops_everything_and_reports_unavailable(env: Env) -> None:
    await env.register(target(1), target(2))
    env.start_lb()
    await eventually(lambda: any(e["message"] == "egressChanged" for e in env.lb_log()), message="a first pass")
    assert env.availability() == [{}]
    assert names(env, 4, 3) == [None] * 3
    await env.register(FRONTEND)
    await eventually(lambda: env.availability() == [{"identifier": HOST}], message="available with the FE")
    assert set(names(env, 4, 50)) == {"t1", "t2"}
    await env.client.unregister(FRONTEND)
    await eventually(lambda: env.availability() == [{}], message="unavailable without the FE")
    assert names(env, 6, 3) == [None] * 3
    assert "lookup 5001" not in netnsmod.run(env.topo.lb, ["ip", "rule", "show"]).stdout


async def test_bad_flows_and_targets_are_logged_and_skipped_while_the_rest_works(env: Env) -> None:
    env.nsp.write_config(config(extra_flows="""\
  - name: flow-bad
    destination-port-ranges: ["7000"]
    byte-matches: ["udp[70000:2] = 1"]
    protocols: [udp]
    vips: [vip-a-v4]
    priority: 9
    stream: stream-a"""))
    await env.register(FRONTEND, target(1), target(2, identifier=101),
                       model.Target.make([f"{lbt.target_ip(3, 4)}/24"], {"identifier": "x"}, stream=STREAM))
    env.start_lb()
    await eventually(lambda: any(p["active"].get("stream-a") == [1] for p in env.programmed()),
                     message="target 1 programmed")
    skipped = {e["error"] for e in env.lb_log() if e["message"] == "inputSkipped"}
    # The NSP's validation (Meridio's webhook regex) lets this one through; the kernel could not load it.
    assert any("flow 'flow-bad': byte matches[0]: offset 70000 is beyond" in s for s in skipped)
    assert any("101 is outside 1..100" in s for s in skipped)
    assert any("'x' is not a numeric identifier" in s for s in skipped)
    assert set(names(env, 4, 20)) == {"t1"}
    replies = lbt.udp_names(env.topo.client, lbt.VIPS[4][0], 7000, [None])
    assert replies[0][0] and replies[0][0].startswith("t1")


class Traffic:
    """Client traffic while the LB restarts: long-lived TCP echo sessions, new TCP connections, UDP."""

    def __init__(self, topo: lbt.LbTopology) -> None:
        self.topo = topo
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.counts = {"echo": 0, "connect": 0, "udp": 0}
        self.owner: dict[int, str] = {}
        self._thread = threading.Thread(target=lambda: lbt.in_netns(topo.client, self._run), daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        sessions = []
        for i in range(6):
            s = socket.create_connection((lbt.VIPS[4 if i % 2 else 6][0], 4100), timeout=2)
            sessions.append(s)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(1)
        sport = 24000
        while not self.stop.is_set():
            for i, s in enumerate(sessions):
                try:
                    s.sendall(b"ping")
                    name = s.recv(64).decode().split()[0]
                    if self.owner.setdefault(i, name) != name:
                        self.errors.append(f"session {i} moved from {self.owner[i]} to {name}")
                    self.counts["echo"] += 1
                except OSError as exc:
                    self.errors.append(f"session {i}: {exc!r}")
            sport = sport + 1 if sport < 24999 else 24000
            if lbt._tcp_once(lbt.VIPS[4][0], 5000, sport, 2.0) is None:
                self.errors.append(f"new connection from {sport} failed")
            self.counts["connect"] += 1
            try:
                udp.sendto(b"x", (lbt.VIPS[4][0], 7000))
                udp.recv(64)
                self.counts["udp"] += 1
            except OSError as exc:
                self.errors.append(f"udp: {exc!r}")
            time.sleep(0.01)
        for s in sessions:
            s.close()
        udp.close()


async def test_an_lb_killed_or_stopped_and_restarted_under_traffic_loses_no_connection(env: Env) -> None:
    await env.register(FRONTEND, target(1), target(2), target(3))
    env.start_lb()
    await eventually(lambda: any(p["active"].get("stream-a") == [1, 2, 3] for p in env.programmed()),
                     message="targets programmed")
    before = env.state()
    with Traffic(env.topo) as traffic:
        await asyncio.sleep(1.0)
        for sig in (signal.SIGKILL, signal.SIGTERM):
            env.procs.stop(env.lb, sig=sig)
            await asyncio.sleep(1.0)  # the daemon is gone: the kernel keeps forwarding
            env.start_lb()
            await eventually(lambda: env.programmed(), message="the restarted daemon's first pass")
            await asyncio.sleep(1.0)
            first = env.programmed()[0]
            assert first["commands"] == 0 and first["active"] == {"stream-a": [1, 2, 3]}
            assert first["fastpathBuckets"] == 0 and first["fastpathEntries"] == 0  # only the difference: none
            assert [e["reopened"] for e in env.fastpath_log()] == [True]  # the pins, not a new program
    assert traffic.errors == []
    assert traffic.counts["connect"] > 50 and traffic.counts["echo"] > 300 and traffic.counts["udp"] > 50
    assert env.state() == before


async def test_a_pending_target_is_taken_as_soon_as_its_link_is_up_and_dropped_when_the_link_goes(env: Env) -> None:
    # t3 moves behind its own LB-side link (a second bridge, as a link to another proxy would be).
    with lbt.Netlink(env.topo.targets[3]) as nl:
        nl.add_address("eth0", "169.254.102.3/24")
    with lbt.Netlink(env.topo.lb) as nl:
        nl.add_bridge("tgt1")
        nl.set_link(f"{env.topo.target_prefix}p3", master="tgt1")
        nl.set_link("tgt1", up=True)
    far = model.Target.make(["169.254.102.3/24"], {"identifier": "3"}, stream=STREAM)
    await env.register(FRONTEND, target(1), far)
    env.start_lb("--check-interval", "60s")  # only netlink notifications can trigger the retries below
    await eventually(lambda: any(p["pending"].get("stream-a") == [3] for p in env.programmed()),
                     message="target 3 pending")
    with lbt.Netlink(env.topo.lb) as nl:
        nl.add_address("tgt1", "169.254.102.254/24")
    await eventually(lambda: env.programmed()[-1]["active"] == {"stream-a": [1, 3]}, timeout=3,
                     message="target 3 active once its link has an address in its subnet")
    assert set(names(env, 4, 60)) == {"t1", "t3"}
    with lbt.Netlink(env.topo.lb) as nl:
        nl.delete_link("tgt1")
    await eventually(lambda: env.programmed()[-1]["pending"] == {"stream-a": [3]}, timeout=3,
                     message="target 3 pending again once its link is gone")
    assert set(names(env, 4, 30)) == {"t1"}


async def test_forwarding_survives_an_nsp_outage_and_the_lb_follows_the_restarted_nsp(env: Env) -> None:
    await env.register(FRONTEND, target(1), target(2), target(3))
    env.start_lb()
    await eventually(lambda: any(p["active"].get("stream-a") == [1, 2, 3] for p in env.programmed()),
                     message="targets programmed")
    env.procs.stop(env.nsp.proc, sig=signal.SIGKILL)
    await asyncio.sleep(1.0)
    assert set(names(env, 4, 60)) == {"t1", "t2", "t3"}  # nothing changed while the NSP is away
    env.nsp.start()  # targets come back from its sqlite registry
    # The client's channel may still be in gRPC's reconnect backoff from the outage; a
    # real caller retries a TemporaryError, and so does the test.
    await eventually_call(lambda: env.client.unregister(target(3)), message="unregister after the NSP restart")
    await eventually(lambda: env.programmed()[-1]["active"] == {"stream-a": [1, 2]}, message="target 3 removed")
    assert set(names(env, 6, 60)) == {"t1", "t2"}
