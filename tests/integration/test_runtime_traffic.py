"""The traffic tool against a loopback test double of the example target (real sockets, one process).

``_FakeTarget`` is a test double of ``meridio example-target``: it answers ``<name>\\n`` then echoes
(TCP) and ``<name>\\n<payload>`` (UDP), and can be told to misbehave (drop, reset, rename).
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from meridio.runtime.local import traffic


class _FakeTarget:
    def __init__(self, name: str = "t1") -> None:
        self.name = name
        self.drop_first_datagrams = 0
        self.stalled: set[asyncio.StreamWriter] = set()
        """Connections that stopped answering (as behind a dead path); new ones answer."""
        self.writers: list[asyncio.StreamWriter] = []
        self.seen: set[tuple[str, int]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._tcp, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=("127.0.0.1", port))
        return port

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(f"{self.name}\n".encode())
        try:
            while line := await reader.readline():
                if writer not in self.stalled:
                    writer.write(line)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def reset_all(self) -> None:
        for w in self.writers:
            if w.is_closing():
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:  # RST instead of FIN, as a target that lost the connection would do
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            w.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.reset_all()
        self.server.close()
        self.udp.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: _FakeTarget) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr not in self.owner.seen and self.owner.drop_first_datagrams:
            self.owner.seen.add(addr)
            self.owner.drop_first_datagrams -= 1
            return
        self.transport.sendto(f"{self.owner.name}\n".encode() + data, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def target():  # type: ignore[no-untyped-def]
    t = _FakeTarget()
    port = await t.start()
    t.port = port  # type: ignore[attr-defined]
    yield t
    await t.stop()


async def test_tcp_connections_are_counted_per_answering_target(target: _FakeTarget) -> None:
    report = await traffic.run(traffic.Options("127.0.0.1", target.port, nconn=400, timeout_s=20))  # type: ignore[attr-defined]
    assert report["hosts"] == {"t1": 400} and report["lost"] == 0 and report["connections"] == 400


async def test_udp_exchanges_are_resent_when_unanswered_and_not_lost(target: _FakeTarget) -> None:
    target.drop_first_datagrams = 50
    report = await traffic.run(traffic.Options("127.0.0.1", target.port, udp=True, nconn=200, timeout_s=20,  # type: ignore[attr-defined]
                                               udp_retry_s=0.1))
    assert report["hosts"] == {"t1": 200} and report["lost"] == 0


async def test_connections_to_a_closed_port_are_all_lost_with_their_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = await traffic.run(traffic.Options("127.0.0.1", port, nconn=20, timeout_s=5))
    assert report["hosts"] == {} and report["lost"] == 20 and report["errors"] == {"refused": 20}


async def test_unanswered_udp_is_lost_when_the_deadline_passes() -> None:
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # bound, silent
        port = s.getsockname()[1]
        report = await traffic.run(traffic.Options("127.0.0.1", port, udp=True, nconn=5, timeout_s=0.5,
                                                   udp_retry_s=0.1))
    assert report["lost"] == 5 and report["hosts"] == {}


async def test_ctraffic_counts_messages_and_a_reset_connection_reconnects(target: _FakeTarget) -> None:
    opts = traffic.Options("127.0.0.1", target.port, nconn=5, duration_s=1.5, rate=20, timeout_s=2)  # type: ignore[attr-defined]
    run = asyncio.create_task(traffic.run(opts))
    await asyncio.sleep(0.6)
    target.reset_all()
    report = await run
    assert report["resets"] == 5 and report["reconnects"] == 5 and report["hosts"] == {"t1": 10}
    assert report["timeouts"] == 0
    assert report["lost"] == 0 and report["failed_connects"] == 0
    assert report["messages"]["t1"] == report["received"] > 5 * 15
    assert report["sent"] - report["received"] == report["lost_messages"] <= 5


async def test_ctraffic_udp_reports_flows_moved_to_another_target(target: _FakeTarget) -> None:
    opts = traffic.Options("127.0.0.1", target.port, udp=True, nconn=3, duration_s=1.0, rate=20, timeout_s=1)  # type: ignore[attr-defined]
    run = asyncio.create_task(traffic.run(opts))
    await asyncio.sleep(0.5)
    target.name = "t2"
    report = await run
    assert report["moved"] == 3 and set(report["hosts"]) == {"t1", "t2"} and report["lost_messages"] == 0


def test_the_module_prints_one_json_object_and_rejects_a_bad_address() -> None:
    done = subprocess.run([sys.executable, "-m", "meridio.runtime.local.traffic", "--address", "not an address",
                           "--port", "1"], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "bad address" in json.loads(done.stdout)["error"]


async def test_ctraffic_gives_up_a_connection_that_stops_answering_and_counts_a_timeout(target: _FakeTarget) -> None:
    opts = traffic.Options("127.0.0.1", target.port, nconn=3, duration_s=1.5, rate=20, timeout_s=0.3)  # type: ignore[attr-defined]
    run = asyncio.create_task(traffic.run(opts))
    await asyncio.sleep(0.5)
    target.stalled = set(target.writers)
    report = await run
    assert report["timeouts"] == 3 and report["resets"] == 0 and report["reconnects"] == 3
    assert report["lost_messages"] == 3
