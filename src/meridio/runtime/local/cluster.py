"""The address plan of the cluster network (pure): what each node and pod gets, modelled on Kubernetes.

A simple CNI in host-gw mode: every node is a router with one leg on the shared underlay segment
(``ul0``) and a bridge ``cni0`` for its pods; pod ``eth0`` has an address of its node's pod subnet and a
default route via the bridge; each node routes every other node's pod subnet via that node's underlay
address. Node ``n`` (1-based, in the environment's ``nodes`` order):

- underlay address: host ``n`` of the underlay prefixes (198.18.0.n/24, fd00:198:18::n/64 by default);
- pod subnet: the ``n``-th /24 and /64 of the pod network (10.244.n.0/24, fd00:10:244:n::/64); its first
  host (``.1``, ``::1``) is the node's address on ``cni0``, the pods' gateway;
- pods: hosts 2..254 of the subnet, leased per pod name by the controller (:data:`POD_HOSTS`), the same
  host index in both families.

Services: Meridio's service names resolve to the pod that serves them (``nsp-service-<trench>`` → the
NSP pod, ``ipam-service-<trench>`` → the IPAM pod), written into each pod's ``/etc/hosts``
(:func:`hosts_file`) as a kubelet and cluster DNS would answer them.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence

from meridio.runtime import workloads
from meridio.runtime.local import environment as envmod

__all__ = ["Address", "Interface", "interface", "POD_BRIDGE", "POD_HOSTS", "POD_IF", "UNDERLAY_IF", "NSP_PORT",
           "IPAM_PORT", "Node", "Plan", "hosts_file", "ipam_service", "nsp_service", "plan"]

POD_IF = "eth0"
"""A pod's primary interface."""
POD_BRIDGE = "cni0"
"""The node's bridge its pods' ``eth0`` are attached to."""
UNDERLAY_IF = "ul0"
"""The node's interface on the underlay segment."""
POD_HOSTS = range(2, 255)
"""Host indexes a pod may lease in its node's subnets (1 is the node)."""
NSP_PORT, IPAM_PORT = workloads.NSP_PORT, workloads.IPAM_PORT
"""Meridio's service ports."""

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def interface(text: str) -> Interface:
    """``addr/len`` text back to an interface value."""
    return ipaddress.ip_interface(text)


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    index: int
    underlay: tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
    """The node's addresses on the underlay segment (with the segment's prefix length)."""
    pod_subnets: tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]

    @property
    def gateways(self) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]:
        """The node's addresses on ``cni0``: its pods' default gateway."""
        v4, v6 = self.pod_subnets
        return (ipaddress.IPv4Interface(f"{v4.network_address + 1}/{v4.prefixlen}"),
                ipaddress.IPv6Interface(f"{v6.network_address + 1}/{v6.prefixlen}"))

    def pod_addresses(self, host: int) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]:
        """The ``eth0`` addresses of the pod that leased ``host``."""
        if host not in POD_HOSTS:
            raise ValueError(f"pod host index {host} is outside {POD_HOSTS.start}..{POD_HOSTS.stop - 1}")
        v4, v6 = self.pod_subnets
        return (ipaddress.IPv4Interface(f"{v4.network_address + host}/{v4.prefixlen}"),
                ipaddress.IPv6Interface(f"{v6.network_address + host}/{v6.prefixlen}"))


@dataclasses.dataclass(frozen=True)
class Plan:
    nodes: tuple[Node, ...]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def routes(self, name: str) -> list[tuple[Network, Address]]:
        """Node ``name``'s routes to the other nodes' pod subnets: ``(subnet, via underlay address)``."""
        out: list[tuple[Network, Address]] = []
        for other in self.nodes:
            if other.name != name:
                out += [(other.pod_subnets[0], other.underlay[0].ip), (other.pod_subnets[1], other.underlay[1].ip)]
        return out


def plan(env: envmod.Environment) -> Plan:
    c = env.cluster
    nodes = []
    for i, name in enumerate(env.nodes, start=1):
        v4 = ipaddress.IPv4Network((int(c.pod_ipv4.network_address) + (i << 8), 24))
        v6 = ipaddress.IPv6Network((int(c.pod_ipv6.network_address) + (i << 64), 64))
        nodes.append(Node(name=name, index=i, pod_subnets=(v4, v6), underlay=(
            ipaddress.IPv4Interface(f"{c.underlay_ipv4.network_address + i}/{c.underlay_ipv4.prefixlen}"),
            ipaddress.IPv6Interface(f"{c.underlay_ipv6.network_address + i}/{c.underlay_ipv6.prefixlen}"))))
    return Plan(tuple(nodes))


def nsp_service(trench: str) -> str:
    """Meridio's NSP service name of ``trench`` (``nsp-service-<trench>``)."""
    return f"nsp-service-{trench}"


def ipam_service(trench: str) -> str:
    return f"ipam-service-{trench}"


def hosts_file(pod_name: str, own: Sequence[Interface],
               services: Mapping[str, Sequence[Address]]) -> str:
    """A pod's ``/etc/hosts``: loopback, its own name, then each service name on its pod's addresses
    (sorted, so the same inputs give the same bytes)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{a.ip}\t{pod_name}" for a in own]
    for name in sorted(services):
        lines += [f"{addr}\t{name}" for addr in services[name]]
    return "\n".join(lines) + "\n"
