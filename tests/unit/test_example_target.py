"""The example target: replies, port parsing, packet-info encoding (pure) and the servers on loopback."""
from __future__ import annotations

import asyncio
import socket

import pytest

from meridio.target import replies, server


def test_the_tcp_greeting_and_udp_reply_carry_the_name_then_the_payload() -> None:
    assert replies.greeting("target-a-1") == b"target-a-1\n"
    assert replies.udp_reply("target-a-1", b"ping") == b"target-a-1\nping"


def test_a_udp_reply_is_cut_to_the_largest_datagram() -> None:
    assert len(replies.udp_reply("t", b"x" * 70000)) <= replies.MAX_DATAGRAM


@pytest.mark.parametrize("text, ports", [("4000,4001,4002", (4000, 4001, 4002)), ("", ()), (" 4003 , ", (4003,))])
def test_port_lists_parse(text: str, ports: tuple[int, ...]) -> None:
    assert replies.parse_ports("--tcp-ports", text) == ports


@pytest.mark.parametrize("text, error", [
    ("40x", "--udp-ports: '40x' is not a port number"), ("0", "not a port number"), ("65536", "not a port number"),
    ("4000,4000", "port 4000 is given twice"),
])
def test_bad_port_lists_are_refused_naming_the_option(text: str, error: str) -> None:
    with pytest.raises(replies.PortsError, match=error):
        replies.parse_ports("--udp-ports", text)


@pytest.mark.parametrize("family, address", [
    (socket.AF_INET6, "2001:db8::1"), (socket.AF_INET6, "203.0.113.1"), (socket.AF_INET, "203.0.113.1"),
], ids=["v6-socket-v6", "v6-socket-v4-mapped", "v4-socket"])
def test_the_reply_source_item_is_read_back_as_the_same_address(family: socket.AddressFamily, address: str) -> None:
    level, kind, data = replies.source_cmsg(family, address)
    if family == socket.AF_INET:
        # a received IP_PKTINFO carries the header destination in its last field (ipi_addr)
        data = data[:4] + bytes(4) + data[4:8]
    assert replies.destination_from_cmsgs([(level, kind, data)]) == address


def test_a_v4_destination_on_a_dual_stack_socket_becomes_a_v4_mapped_source() -> None:
    _, _, data = replies.source_cmsg(socket.AF_INET6, "203.0.113.1")
    assert data[:16] == socket.inet_pton(socket.AF_INET6, "::ffff:203.0.113.1")


def test_no_packet_info_gives_no_destination() -> None:
    assert replies.destination_from_cmsgs([(socket.SOL_SOCKET, 1, b"\0" * 8)]) is None


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_tcp_clients_get_the_name_first_then_an_echo_of_what_they_send() -> None:
    port = _free_port(socket.SOCK_STREAM)
    target = server.ExampleTarget("target-x")
    await target.start((port,), ())
    try:
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        for i, (reader, writer) in enumerate(clients):
            assert await reader.readline() == b"target-x\n"
            writer.write(f"hello {i}\n".encode())
            await writer.drain()
            assert await reader.readline() == f"hello {i}\n".encode()
        for _, writer in clients:
            writer.close()
    finally:
        await target.close()


async def test_connections_above_the_limit_are_closed_at_once() -> None:
    port = _free_port(socket.SOCK_STREAM)
    target = server.ExampleTarget("target-x", max_connections=1)
    await target.start((port,), ())
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        assert await r1.readline() == b"target-x\n"
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r2.read(100), 2) == b""
        w1.close()
        w2.close()
    finally:
        await target.close()


async def test_udp_datagrams_get_the_name_and_the_payload_back_on_ipv4_and_ipv6_loopback() -> None:
    port = _free_port(socket.SOCK_DGRAM)
    target = server.ExampleTarget("target-x")
    await target.start((), (port,))
    loop = asyncio.get_running_loop()
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_DGRAM) as client:
                client.setblocking(False)
                await loop.sock_sendto(client, b"ping", (host, port))
                data, source = await asyncio.wait_for(loop.sock_recvfrom(client, 1000), 2)
                assert (data, source[0]) == (b"target-x\nping", host)
    finally:
        await target.close()


async def test_closing_ends_open_connections() -> None:
    port = _free_port(socket.SOCK_STREAM)
    target = server.ExampleTarget("target-x")
    await target.start((port,), ())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    await target.close()
    assert await asyncio.wait_for(reader.read(100), 2) == b""
    assert target.connections == 0
    writer.close()
