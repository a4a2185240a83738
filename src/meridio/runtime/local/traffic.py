"""An mconnect/ctraffic-like traffic client; runs inside a traffic generator namespace.

``python -m meridio.runtime.local.traffic --address VIP --port P [--udp] [--nconn N] [--timeout S]``
(mconnect mode) opens N connections (TCP) or N exchanges from N source ports (UDP) to ``VIP:P``, reads
the name the target answers first (the example target sends ``<name>\\n``), and prints one JSON object:
``connections`` (attempted), ``hosts`` (target name → connections it answered), ``lost`` (connections
that got no answer), ``errors`` (reason → count).

With ``--duration S [--rate R]`` (ctraffic mode) it keeps N long-lived connections for S seconds, each
sending R messages per second that the target echoes; it reports per target the connections and the
messages, plus ``failed_connects``, ``resets`` (a connection reset or closed by the other end),
``timeouts`` (a message not echoed within ``--timeout``: the connection is given up), ``reconnects``
(connections made again after either), ``moved`` (a UDP flow answered by another target than before) and ``lost_messages``: how
much a disruption (a killed process, a failed gateway, a scale-in) hurt established traffic.

Only the standard library: it must start fast and stay small inside ``ip netns exec``.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import errno
import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["Options", "Tally", "ctraffic", "main", "mconnect", "run"]


@dataclasses.dataclass(frozen=True)
class Options:
    address: str
    port: int
    udp: bool = False
    nconn: int = 400
    timeout_s: float = 120.0
    """mconnect: the whole run's deadline. ctraffic: deadline of one connect or one message."""
    parallel: int = 100
    duration_s: float | None = None
    rate: float = 10.0
    """ctraffic: messages per second per connection."""
    udp_retry_s: float = 0.5
    """mconnect UDP: resend a datagram not answered within this time (as a real client would)."""


class Tally:
    """Counters of one run; :meth:`report` is the JSON object printed."""

    def __init__(self) -> None:
        self.hosts: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.lost = 0
        self.sent = 0
        self.received = 0
        self.failed_connects = 0
        self.resets = 0
        self.timeouts = 0
        self.reconnects = 0
        self.moved = 0

    def answered(self, host: str) -> None:
        self.hosts[host] += 1

    def failed(self, reason: str) -> None:
        self.lost += 1
        self.errors[reason] += 1

    def report(self, opts: Options, elapsed: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "ctraffic" if opts.duration_s else "mconnect", "protocol": "udp" if opts.udp else "tcp",
            "address": opts.address, "port": opts.port, "connections": opts.nconn,
            "hosts": dict(sorted(self.hosts.items())), "lost": self.lost, "errors": dict(sorted(self.errors.items())),
            "elapsed_s": round(elapsed, 3)}
        if opts.duration_s:
            out.update(duration_s=opts.duration_s, rate=opts.rate, messages=dict(sorted(self.messages.items())),
                       sent=self.sent, received=self.received, lost_messages=self.sent - self.received,
                       failed_connects=self.failed_connects, resets=self.resets, timeouts=self.timeouts,
                       reconnects=self.reconnects,
                       moved=self.moved)
        return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (EOFError, asyncio.IncompleteReadError)):
        return "closed"
    if isinstance(exc, OSError) and exc.errno:
        return {errno.EHOSTUNREACH: "host-unreachable", errno.ENETUNREACH: "net-unreachable",
                errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout"}.get(exc.errno,
                                                                            errno.errorcode.get(exc.errno, "oserror"))
    return type(exc).__name__


def _name_of(reply: bytes) -> str:
    return reply.split(b"\n", 1)[0].decode(errors="replace").strip()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


# ------------------------------------------------------------------------------------ mconnect mode


async def _tcp_once(opts: Options, deadline: float) -> str:
    remaining = max(deadline - time.monotonic(), 0.001)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(opts.address, opts.port), remaining)
    try:
        line = await asyncio.wait_for(reader.readline(), max(deadline - time.monotonic(), 0.001))
        if not line:
            raise EOFError("closed before the name")
        return _name_of(line)
    finally:
        _close(writer)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.error = exc


async def _udp_endpoint(opts: Options) -> tuple[asyncio.DatagramTransport, _Datagrams]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(opts.address, opts.port))
    return transport, proto


async def _udp_once(opts: Options, deadline: float, index: int) -> str:
    transport, proto = await _udp_endpoint(opts)
    try:
        payload = f"mconnect {index}".encode()
        while True:
            transport.sendto(payload)
            wait = min(opts.udp_retry_s, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError()
            with contextlib.suppress(asyncio.TimeoutError):
                return _name_of(await asyncio.wait_for(proto.queue.get(), wait))
            if proto.error is not None:
                raise proto.error
    finally:
        transport.close()


async def mconnect(opts: Options) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + opts.timeout_s
    gate = asyncio.Semaphore(opts.parallel)

    async def one(i: int) -> None:
        async with gate:
            try:
                host = await (_udp_once(opts, deadline, i) if opts.udp else _tcp_once(opts, deadline))
            except Exception as exc:  # noqa: BLE001 (every failure is a lost connection, with its reason)
                tally.failed(_reason(exc))
            else:
                tally.answered(host)

    await asyncio.gather(*(one(i) for i in range(opts.nconn)))
    return tally


# ------------------------------------------------------------------------------------ ctraffic mode


async def _tcp_session(opts: Options, end: float, tally: Tally, index: int) -> None:
    """One long-lived connection, re-made when broken; one that never connects at all is ``lost``."""
    connected, seq = False, 0
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(opts.address, opts.port), opts.timeout_s)
            host = _name_of(await asyncio.wait_for(reader.readline(), opts.timeout_s))
        except Exception as exc:  # noqa: BLE001 (a failed connect, counted with its reason)
            tally.failed_connects += 1
            tally.errors[_reason(exc)] += 1
            await asyncio.sleep(0.1)
            continue
        tally.answered(host)
        if connected:
            tally.reconnects += 1
        connected = True
        try:
            seq = await _tcp_exchange(opts, end, tally, reader, writer, host, index, seq)
        except Exception as exc:  # noqa: BLE001 (a broken connection, counted with its reason)
            reason = _reason(exc)
            if reason == "timeout":
                tally.timeouts += 1
            else:
                tally.resets += 1
            tally.errors[reason] += 1
        finally:
            _close(writer)
    if not connected:
        tally.lost += 1


async def _tcp_exchange(opts: Options, end: float, tally: Tally, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, host: str, index: int, seq: int) -> int:
    period = 1.0 / opts.rate
    while time.monotonic() < end:
        seq += 1
        message = f"ctraffic {index} {seq}\n".encode()
        tally.sent += 1
        writer.write(message)
        await writer.drain()
        echo = await asyncio.wait_for(reader.readline(), opts.timeout_s)
        if echo != message:
            raise EOFError("closed" if not echo else "bad echo")
        tally.received += 1
        tally.messages[host] += 1
        await asyncio.sleep(period)
    return seq


async def _udp_session(opts: Options, end: float, tally: Tally, index: int) -> None:
    """One flow (fixed source port); ``moved`` when another target answers; never answered is ``lost``."""
    transport, proto = await _udp_endpoint(opts)
    period, seq, last_host = 1.0 / opts.rate, 0, None
    try:
        while time.monotonic() < end:
            seq += 1
            payload = f"ctraffic {index} {seq}".encode()
            tally.sent += 1
            transport.sendto(payload)
            try:
                reply = await _udp_reply(proto, payload, opts.timeout_s)
            except TimeoutError:
                tally.errors["timeout"] += 1
                continue
            host = _name_of(reply)
            tally.received += 1
            tally.messages[host] += 1
            if last_host is None:
                tally.answered(host)
            elif host != last_host:
                tally.moved += 1
                tally.answered(host)
            last_host = host
            await asyncio.sleep(period)
    finally:
        transport.close()
    if last_host is None:
        tally.lost += 1


async def _udp_reply(proto: _Datagrams, payload: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:  # skip late replies to earlier messages
        reply = await asyncio.wait_for(proto.queue.get(), max(deadline - time.monotonic(), 0.001))
        if reply.endswith(payload):
            return reply


async def ctraffic(opts: Options) -> Tally:
    assert opts.duration_s is not None
    tally = Tally()
    end = time.monotonic() + opts.duration_s
    session = _udp_session if opts.udp else _tcp_session
    await asyncio.gather(*(session(opts, end, tally, i) for i in range(opts.nconn)))
    return tally


# ------------------------------------------------------------------------------------ entry point


async def run(opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    tally = await (ctraffic(opts) if opts.duration_s else mconnect(opts))
    return tally.report(opts, time.monotonic() - started)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m meridio.runtime.local.traffic", description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="VIP address")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--udp", action="store_true")
    p.add_argument("--nconn", type=int, default=400)
    p.add_argument("--timeout", type=float, default=None, help="seconds (mconnect default 120, ctraffic 2)")
    p.add_argument("--parallel", type=int, default=100)
    p.add_argument("--duration", type=float, default=None, help="ctraffic mode: seconds")
    p.add_argument("--rate", type=float, default=10.0, help="ctraffic: messages per second per connection")
    return p


def options(argv: Sequence[str] | None = None) -> Options:
    a = _parser().parse_args(argv)
    timeout = a.timeout if a.timeout is not None else (2.0 if a.duration else 120.0)
    return Options(address=a.address, port=a.port, udp=a.udp, nconn=a.nconn, timeout_s=timeout,
                   parallel=max(a.parallel, 1), duration_s=a.duration, rate=max(a.rate, 0.1))


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(argv)
    try:
        socket.getaddrinfo(opts.address, opts.port)
    except socket.gaierror as exc:
        print(json.dumps({"error": f"bad address {opts.address!r}: {exc.strerror}"}))
        return 2
    print(json.dumps(asyncio.run(run(opts))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
