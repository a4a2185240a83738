"""What the example target answers, and the packet-info ancillary data it needs (pure).

TCP: ``<name>\\n`` as soon as a connection is accepted, then an echo of everything the client sends.
UDP: ``<name>\\n`` followed by the received payload, sent **from the address the datagram was sent to**
(the VIP): the target has several addresses (its conduit address and the VIPs), and an unbound reply
would leave from the conduit address and miss the stateless return path. The destination address
comes with each datagram as IP_PKTINFO / IPV6_PKTINFO ancillary data and goes back in the reply's
IPV6_PKTINFO / IP_PKTINFO as the source (on a dual-stack socket, Linux reports IPv4 destinations as
v4-mapped IPv6 and accepts a v4-mapped IPV6_PKTINFO source for IPv4 replies).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

__all__ = ["IP_PKTINFO", "greeting", "udp_reply", "parse_ports", "destination_from_cmsgs", "source_cmsg",
           "PortsError"]

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # <linux/in.h>; not exported by Python 3.11
_IN_PKTINFO = struct.Struct("=I4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
MAX_DATAGRAM = 65535


class PortsError(ValueError):
    """A port list that cannot be used; the message names the option."""


def greeting(name: str) -> bytes:
    return name.encode() + b"\n"


def udp_reply(name: str, payload: bytes) -> bytes:
    """The answer to one datagram, cut to the largest UDP payload."""
    return (greeting(name) + payload)[:MAX_DATAGRAM - 48]


def parse_ports(option: str, text: str) -> tuple[int, ...]:
    """``"4000,4001"`` → ``(4000, 4001)``; empty → ``()``. Raises :class:`PortsError` naming ``option``."""
    ports: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise PortsError(f"{option}: {part!r} is not a port number (1-65535)")
        if int(part) in ports:
            raise PortsError(f"{option}: port {part} is given twice")
        ports.append(int(part))
    return tuple(ports)


def destination_from_cmsgs(cmsgs: Iterable[tuple[int, int, bytes]]) -> str | None:
    """The destination address of a received datagram (IPv4 as dotted quad, v4-mapped unwrapped)."""
    for level, kind, data in cmsgs:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
            addr = ipaddress.IPv6Address(_IN6_PKTINFO.unpack_from(data)[0])
            return str(addr.ipv4_mapped or addr)
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            return str(ipaddress.IPv4Address(_IN_PKTINFO.unpack_from(data)[2]))
    return None


def source_cmsg(family: socket.AddressFamily, source: str) -> tuple[int, int, bytes]:
    """The ancillary item that makes a reply leave from ``source`` on a socket of ``family``."""
    addr = ipaddress.ip_address(source)
    if family == socket.AF_INET6:
        v6 = ipaddress.IPv6Address(f"::ffff:{addr}") if addr.version == 4 else addr
        return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(v6.packed, 0)
    return socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, addr.packed, b"\0" * 4)
