"""kill -9 during writes: the NSP, the IPAM and the runtime's store are SIGKILLed again and again while
clients write to them; after every kill the file passes ``PRAGMA integrity_check``, every write that was
acknowledged is there, nothing is half applied, and the restarted service serves what the file holds.

Real: ``meridio run nsp`` / ``meridio run ipam`` processes on loopback, clients on threads over gRPC, a
child process writing through :class:`meridio.runtime.local.store.Store`; SIGKILL at a random moment
of a stream of writes; sqlite files under tmp_path read back with sqlite directly. Nothing is faked.

A write whose call did not come back (the process was killed under it) may or may not be stored: the
check allows exactly that one, per key, in either state, and takes the file's word for it afterwards.
What SIGKILL cannot show is a power cut (the page cache survives a killed process): that is what
``synchronous=FULL``, checked at open by the unit tests, is for.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import pathlib
import random
import signal
import sqlite3
import sys
import threading
import time
from typing import Any

import grpc

from meridio.api import model as m
from meridio.api.pb.ipam.v1 import ipam_pb2_grpc
from meridio.api.pb.nsp.v1 import targetregistry_pb2_grpc
from tests.conftest import wait_for
from tests.integration import nsp_support
from tests.integration.test_ipam import CONFIG as IPAM_NSP_CONFIG
from tests.integration.test_ipam import Ipam, child

KILLS = 10
WRITERS = 3
S1 = m.Stream("stream-a-i", m.Conduit("conduit-a-1", m.Trench("trench-a")), 100)
_UNKNOWN = object()
"""The outcome of a call cut by the kill."""


@dataclasses.dataclass
class Book:
    """What the clients were told, per key: the acknowledged value (None: absent) and the one in flight."""

    acked: dict[Any, Any] = dataclasses.field(default_factory=dict)
    inflight: dict[Any, Any] = dataclasses.field(default_factory=dict)
    acks: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def send(self, key: Any, value: Any) -> None:
        with self.lock:
            self.inflight[key] = value

    def ack(self, key: Any, value: Any) -> None:
        with self.lock:
            self.inflight.pop(key, None)
            self.acked[key] = value
            self.acks += 1

    def drop(self, key: Any) -> None:
        """The call failed before anything could be written (a refused request)."""
        with self.lock:
            self.inflight.pop(key, None)

    def check(self, stored: dict[Any, Any]) -> None:
        """Every key holds its acknowledged value or, if a call on it was cut, that call's value."""
        for key in set(self.acked) | set(stored) | set(self.inflight):
            have, acked = stored.get(key), self.acked.get(key)
            allowed = [acked]
            if key in self.inflight:
                allowed.append(self.inflight[key])
            assert have in allowed or (_UNKNOWN in allowed and have is not None), (
                f"{key}: stored {have!r}, acknowledged {acked!r}, in flight {self.inflight.get(key, '-')!r}")

    def settle(self, stored: dict[Any, Any]) -> None:
        """After the check: the file says how the cut calls ended."""
        self.acked = {k: v for k, v in stored.items()}
        self.inflight.clear()


def _integrity(path: pathlib.Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return db


def _kill_under_writes(procs: Any, proc: Any, book: Book, writer: Any, rng: random.Random) -> None:
    """Run ``WRITERS`` threads of ``writer(index, stop)`` until at least 5 more writes were acknowledged and
    a random moment later, then SIGKILL ``proc`` and wait for the writers to notice."""
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(i, stop), daemon=True) for i in range(WRITERS)]
    before = book.acks
    for t in threads:
        t.start()
    wait_for(lambda: book.acks >= before + 5, timeout=20, message="writes acknowledged")
    time.sleep(rng.uniform(0.0, 0.3))
    procs.stop(proc, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive()


# ------------------------------------------------------------------------------------------- NSP


def _nsp_rows(path: pathlib.Path) -> dict[str, int]:
    with contextlib.closing(_integrity(path)) as db:
        rows = db.execute("SELECT ips, context, stream_name, conduit_name, trench_name FROM targets").fetchall()
    out = {}
    for ips, context, stream, conduit, trench in rows:
        assert (stream, conduit, trench) == ("stream-a-i", "conduit-a-1", "trench-a")
        [ip] = json.loads(ips)
        out[ip] = int(json.loads(context)["gen"])
    return out


def _nsp_served(address: str) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        watch = targetregistry_pb2_grpc.TargetRegistryStub(channel).Watch(
            m.target_to_pb(m.Target.make(ips=[], status=m.TargetStatus.ANY, stream=S1)), timeout=10)
        first = next(iter(watch))
        watch.cancel()
    return {t.ips[0]: int(t.context["gen"]) for t in first.targets}


def test_the_nsp_killed_under_registrations_keeps_every_acknowledged_one(procs: Any, tmp_path: pathlib.Path) -> None:
    nsp = nsp_support.launch_nsp(procs, tmp_path, entry_timeout="1h")
    book, rng, gens = Book(), random.Random(15), iter(range(1, 10**9))

    def writer(index: int, stop: threading.Event) -> None:
        wrng = random.Random(index)
        with grpc.insecure_channel(nsp.address) as channel:
            stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
            while not stop.is_set():
                ip, gen = f"10.{index}.0.{wrng.randrange(40)}", next(gens)
                book.send(ip, gen)
                try:
                    stub.Register(m.target_to_pb(m.Target.make(ips=[ip], context={"gen": str(gen)}, stream=S1)),
                                  timeout=5)
                except grpc.RpcError as exc:
                    if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:  # configuration not loaded yet
                        book.drop(ip)
                        time.sleep(0.05)
                        continue
                    return  # killed under the call: its outcome is for the file to tell
                book.ack(ip, gen)

    for _ in range(KILLS):
        _kill_under_writes(procs, nsp.proc, book, writer, rng)
        stored = _nsp_rows(nsp.datasource)
        book.check(stored)
        book.settle(stored)
        nsp.restart()
        assert _nsp_served(nsp.address) == stored
        assert not list(nsp.datasource.parent.glob("*.corrupt-*"))
    assert len(book.acked) > WRITERS * 10


# ------------------------------------------------------------------------------------------- IPAM


def _ipam_rows(path: pathlib.Path) -> dict[tuple[str, ...], str]:
    """Children by (node, name) -> address (stored as a host prefix), after checking the tree is whole: every entry's parent is
    stored and holds it, no two children of one node share an address."""
    with contextlib.closing(_integrity(path)) as db:
        rows = {tuple(json.loads(p)): ipaddress.ip_network(n) for p, n in db.execute("SELECT path, network FROM prefixes")}
    children: dict[tuple[str, ...], str] = {}
    for entry, network in rows.items():
        if len(entry) > 1:
            parent = rows.get(entry[:-1])
            assert parent is not None, f"{entry} is stored without its parent"
            assert network.subnet_of(parent), f"{entry}: {network} is not within {parent}"  # type: ignore[arg-type]
        if len(entry) == 4:
            children[(entry[2], entry[3])] = str(network.network_address)
    by_node: dict[str, list[str]] = {}
    for (node, _), address in children.items():
        by_node.setdefault(node, []).append(address)
    assert all(len(a) == len(set(a)) for a in by_node.values()), by_node
    return children


def test_the_ipam_killed_under_allocations_and_releases_keeps_every_acknowledged_one(
        procs: Any, tmp_path: pathlib.Path) -> None:
    nsp = nsp_support.launch_nsp(procs, tmp_path, IPAM_NSP_CONFIG)
    ipam = Ipam(procs, tmp_path, nsp.address)
    ipam.start()
    book, rng, serial = Book(), random.Random(15), iter(range(10**9))

    def writer(index: int, stop: threading.Event) -> None:
        wrng, mine = random.Random(index), []
        with grpc.insecure_channel(ipam.address) as channel:
            stub = ipam_pb2_grpc.IpamStub(channel)
            while not stop.is_set():
                if mine and wrng.random() < 0.3:
                    key, release = mine.pop(wrng.randrange(len(mine))), True
                else:
                    key, release = (f"node-{wrng.randrange(12)}", f"c-{index}-{next(serial)}"), False
                book.send(key, None if release else _UNKNOWN)
                try:
                    if release:
                        stub.Release(child(key[1], "conduit-a-1", key[0], 0), timeout=5)
                    else:
                        reply = stub.Allocate(child(key[1], "conduit-a-1", key[0], 0), timeout=5)
                except grpc.RpcError:
                    return  # killed under the call
                book.ack(key, None if release else reply.address)
                if not release:
                    mine.append(key)

    try:
        for _ in range(KILLS):
            _kill_under_writes(procs, ipam.proc, book, writer, rng)
            stored = _ipam_rows(ipam.datasource)
            book.check(stored)
            book.settle(stored)
            ipam.start()
            for (node, name), address in rng.sample(sorted(stored.items()), min(10, len(stored))):
                assert ipam.allocate(name, node=node).split("/")[0] == address  # served from the file, unchanged
        assert len(book.acked) > WRITERS * 10
    finally:
        ipam.channel.close()


# ------------------------------------------------------------------------------------------- runtime store

_STORE_WRITER = """
import random, sys
from meridio.runtime.local.store import Store
store, rng, gen = Store(__import__("pathlib").Path(sys.argv[1])), random.Random(int(sys.argv[2])), int(sys.argv[3])
def say(*words):
    print(*words, flush=True)
while True:
    gen += 1
    op = rng.choice(["replicas", "meta", "lease", "release"])
    if op == "replicas":
        key = f"deploy-{rng.randrange(10)}"
        say("send", op, key, gen); store.set_replicas(key, gen); say("ack", op, key, gen)
    elif op == "meta":  # three keys in one transaction: all or none
        say("send", op, "abc", gen); store.set_meta({k: str(gen) for k in "abc"}); say("ack", op, "abc", gen)
    elif op == "lease":
        pod = f"pod-{rng.randrange(30)}"
        say("send", op, pod, gen); host = store.lease("seg", pod, range(1, 254)); say("ack", op, pod, host)
    else:
        pod = f"pod-{rng.randrange(30)}"
        say("send", op, pod, gen); store.release(pod); say("ack", op, pod, 0)
"""


def _store_rows(path: pathlib.Path) -> dict[tuple[str, str], Any]:
    with contextlib.closing(_integrity(path)) as db:
        out: dict[tuple[str, str], Any] = {("replicas", d): c for d, c in db.execute("SELECT deployment, count FROM replicas")}
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        out.update({("lease", p): h for p, h in db.execute("SELECT pod, host FROM leases WHERE network='seg'")})
        hosts = [h for (kind, _), h in out.items() if kind == "lease"]
    assert len(hosts) == len(set(hosts)), "two pods hold one address"
    if meta:
        assert len(set(meta.values())) == 1 and set(meta) == set("abc"), f"meta half written: {meta}"
        out[("meta", "abc")] = int(meta["a"])
    return out


def _replay(log: str, book: Book) -> None:
    """The writer's own account of its calls: ``send`` before a call, ``ack`` once it returned."""
    for line in log.splitlines():
        words = line.split()
        if len(words) != 4 or words[0] not in ("send", "ack"):
            continue
        what, op, key, value = words
        kind = "lease" if op in ("lease", "release") else op
        if what == "send":
            book.send((kind, key), None if op == "release" else _UNKNOWN if op == "lease" else int(value))
        else:
            book.ack((kind, key), None if op == "release" else int(value))


def test_the_runtime_store_killed_under_writes_keeps_every_acknowledged_one(
        procs: Any, tmp_path: pathlib.Path) -> None:
    path, book, rng = tmp_path / "state" / "store.db", Book(), random.Random(15)
    for cycle in range(KILLS * 2):
        proc = procs.start([sys.executable, "-c", _STORE_WRITER, str(path), str(cycle), str(cycle * 10**6)],
                           name="store-writer")
        wait_for(lambda: procs.output(proc).count("\nack ") >= 20, timeout=20, message="writes acknowledged")
        time.sleep(rng.uniform(0.0, 0.2))
        procs.stop(proc, signal.SIGKILL)
        _replay(procs.output(proc), book)
        stored = _store_rows(path)
        book.check(stored)
        book.settle(stored)
    assert sum(1 for kind, _ in book.acked if kind == "replicas") >= 5
