"""Workloads as local pods: a namespace, maybe an external link, and the component processes (pure).

:class:`PodBuilder` turns a :class:`~meridio.runtime.reconcile.Workload` into a :class:`PodSpec`: the
namespace and its sysctls (Meridio's ``sysctl-init``), the FE's external link onto its segment, and
one :class:`ProcessSpec` per container with the settings Meridio's operator would give it as
environment variables:

- every pod has ``eth0`` on its node's pod subnet (:mod:`meridio.runtime.local.cluster`;
  :attr:`PodSpec.network`), and an ``/etc/hosts`` naming the services;
- NSP and IPAM listen on TCP ``[::]:7778`` and ``[::]:7777`` in their pods; every component reaches them
  over the pod network at Meridio's service addresses ``nsp-service-<trench>:7778`` and
  ``ipam-service-<trench>:7777`` (node-local sockets below stay files, as hostPath sockets would);
- the LB serves its availability socket in the pod directory, the FE reads it;
- proxies serve the link service at ``<state>/proxies/<trench>/<conduit>/<node>/link.sock``, which the
  TAPA's ``MERIDIO_PROXY_SOCKET`` template points to, and link pod P only to a caller in P's namespace
  (``NSM_POD_NETNS=/run/netns/<prefix>-pod-{pod}``);
- a target pod runs the example target (answering with the pod name) and a TAPA on
  ``<state>/pods/<pod>/ambassador.sock``.

Mutual TLS (on unless the builder is made with ``tls=False``): every component process gets
``MERIDIO_TLS_DIR=<state>/pods/<pod>/tls/<component>`` and the pod spec lists the certificates the
controller issues there before the pod starts (:attr:`PodSpec.certificates`, :meth:`PodBuilder.identity`).

External addresses: an attractor's NetworkAttachmentDefinition is read as Multus would (``vlan`` and
whereabouts ``ipRanges``/``exclude``); the segment is the environment network serving that NAD (or
its VLAN), and the FE's host index is leased by the caller from :func:`host_candidates`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from meridio.api import resources
from meridio.common import identity as identitymod
from meridio.common import tls as tlsmod
from meridio.kernel import netns as netnsmod
from meridio.runtime import reconcile as rc
from meridio.runtime import workloads
from meridio.runtime.local import cluster, pki, scrape, topology
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming, StateLayout
from meridio.runtime.local.supervisor import ProcessSpec

__all__ = ["Nad", "PodBuilder", "PodSpec", "host_candidates", "parse_nad"]


@dataclasses.dataclass(frozen=True)
class PodSpec:
    name: str
    kind: rc.Kind
    netns: str
    spec_hash: str
    sysctls: Mapping[str, str]
    processes: tuple[ProcessSpec, ...]
    external: topology.LinkSpec | None = None
    trench: str = ""
    node: str = ""
    certificates: tuple[pki.CertSpec, ...] = ()
    """Certificates of the pod's components, issued before the processes start."""
    network: topology.LinkSpec | None = None
    """The pod's ``eth0`` onto its node's bridge (``None``: a pod of no node, with loopback only)."""
    gateways: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()
    """Default routes of the pod (via its node)."""


_COMPONENTS = {"nsp": identitymod.Component.NSP, "ipam": identitymod.Component.IPAM, "lb": identitymod.Component.LB,
               "frontend": identitymod.Component.FRONTEND, "proxy": identitymod.Component.PROXY,
               "tapa": identitymod.Component.TAPA}
"""The processes that talk gRPC to other components, and the identity component each has."""
_NODE_BOUND = frozenset({identitymod.Component.PROXY, identitymod.Component.TAPA, identitymod.Component.LB,
                         identitymod.Component.FRONTEND})


def _with_pod_ip(proc: ProcessSpec, node: str,
                 own: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface]) -> ProcessSpec:
    """The pod's addresses (the downward API's ``status.podIPs``) for the LB and the proxy: the ends of
    cross-node conduit tunnels. The LB also learns its node (the proxy has it as ``NSM_HOST`` already)."""
    if proc.component not in ("lb", "proxy"):
        return proc
    extra = {"NSM_POD_IP": ",".join(str(a.ip) for a in own)}
    if proc.component == "lb":
        extra["NSM_HOST"] = node
    return dataclasses.replace(proc, env={**extra, **proc.env})


_RESOLVER_ENV = {"GRPC_DNS_RESOLVER": "native"}
"""Service names resolve through the pod's ``/etc/hosts`` (getaddrinfo). gRPC's default c-ares resolver
asks the host's DNS servers first, which a pod cannot reach: it would wait for their timeouts."""


@dataclasses.dataclass(frozen=True)
class Nad:
    """What the local runtime reads of a NetworkAttachmentDefinition's CNI config."""

    vlan: int | None = None
    ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    excludes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def parse_nad(nad: resources.NetworkAttachmentDefinition) -> Nad:
    """The VLAN and whereabouts ranges of a NAD (bridge/macvlan/vlan plugins, plain or ``plugins`` list)."""
    try:
        config = json.loads(nad.spec.config or "{}")
    except ValueError:
        return Nad()
    plugins = config.get("plugins") if isinstance(config.get("plugins"), list) else [config]
    vlan: int | None = None
    ranges: list[Any] = []
    excludes: list[Any] = []
    for plugin in plugins:
        if not isinstance(plugin, dict):
            continue
        if isinstance(plugin.get("vlan"), int):
            vlan = plugin["vlan"]
        ipam: dict[str, Any] = plugin["ipam"] if isinstance(plugin.get("ipam"), dict) else {}
        items: list[Any] = ipam["ipRanges"] if isinstance(ipam.get("ipRanges"), list) else [ipam]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("range"), str):
                ranges += _networks([item["range"]])
                excludes += _networks(item.get("exclude") or [])
    return Nad(vlan, tuple(ranges), tuple(excludes))


def _networks(values: Sequence[Any]) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    for v in values:
        try:
            yield ipaddress.ip_network(str(v), strict=False)
        except ValueError:
            continue


def host_candidates(net: envmod.Network, *, reserved: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
                    nad: Nad | None = None, limit: int = 250) -> Iterator[int]:
    """Host indexes usable on ``net`` in every family: inside the NAD ranges, not excluded or reserved."""
    subnets = [s for s in (net.ipv4, net.ipv6) if s is not None]
    for index in range(1, limit + 1):
        if all(_usable(s, s.network_address + index, reserved, nad) for s in subnets):
            yield index


def _usable(subnet: Any, addr: Any, reserved: Sequence[Any], nad: Nad | None) -> bool:
    if addr not in subnet or addr == subnet.broadcast_address or addr in reserved:
        return False
    if nad is None:
        return True
    ranges = [r for r in nad.ranges if r.version == addr.version]
    if ranges and not any(addr in r for r in ranges):
        return False
    return not any(addr in x for x in nad.excludes if x.version == addr.version)


class PodBuilder:
    """Knows the environment's paths and names; builds :class:`PodSpec` values (no I/O)."""

    def __init__(self, env: envmod.Environment, layout: StateLayout, naming: Naming, *,
                 python: str = sys.executable, tls: bool = True) -> None:
        self.env, self.layout, self.naming, self.python = env, layout, naming, python
        self.cluster = cluster.plan(env)
        self.tls = tls
        """Mutual TLS between the components (off only for compatibility tests)."""

    # ----------------------------------------------------------------- addresses

    def nsp_address(self, trench: str) -> str:
        """Where the components reach the trench's NSP (over the pod network)."""
        return f"{cluster.nsp_service(trench)}:{cluster.NSP_PORT}"

    def ipam_address(self, trench: str) -> str:
        return f"{cluster.ipam_service(trench)}:{cluster.IPAM_PORT}"

    def nsp_template(self) -> str:
        return f"{cluster.nsp_service('{trench}')}:{cluster.NSP_PORT}"

    def nsp_forward(self, trench: str) -> str:
        """The runtime's own way to the trench's NSP (a port-forward socket: it is not on the pod network)."""
        return f"unix:{self.layout.nsp_socket(trench)}"

    def tapa_socket(self, pod: str) -> pathlib.Path:
        return self.layout.pod_dir(pod) / "ambassador.sock"

    def lb_socket(self, pod: str) -> pathlib.Path:
        return self.layout.pod_dir(pod) / "lb.sock"

    def lb_bpffs(self, pod: str) -> pathlib.Path:
        """The private bpffs the LB's fast path pins its program and maps on (mounted by the controller)."""
        return self.layout.pod_dir(pod) / "bpf"

    def tls_dir(self, pod: str, component: str) -> pathlib.Path:
        return self.layout.pod_dir(pod) / "tls" / component

    def identity(self, w: rc.Workload, component: str) -> identitymod.Identity:
        """The component's identity: per trench where the workload has one, per node where it matters."""
        kind = _COMPONENTS[component]
        trench = (w.trench or None) if kind is not identitymod.Component.TAPA else None
        node = (w.node or None) if kind in _NODE_BOUND else None
        return identitymod.Identity(cluster=self.env.name, component=kind, pod=w.name, trench=trench, node=node)

    def runtime_identity(self) -> identitymod.Identity:
        """The runtime's own client identity (``meridio status`` reads the NSPs with it)."""
        return identitymod.Identity(cluster=self.env.name, component=identitymod.Component.RUNTIME, pod="daemon")

    @property
    def runtime_tls(self) -> tlsmod.Tls | None:
        return tlsmod.Tls(self.layout.runtime_tls) if self.tls else None

    def runtime_certificate(self) -> pki.CertSpec:
        return pki.CertSpec(self.layout.runtime_tls, self.runtime_identity())

    def _tls_env(self, w: rc.Workload, component: str) -> dict[str, str]:
        if component not in _COMPONENTS:
            return {}
        if not self.tls:
            return {tlsmod.INSECURE_ENV: "true", tlsmod.DIR_ENV: ""}
        return {tlsmod.INSECURE_ENV: "false", tlsmod.DIR_ENV: str(self.tls_dir(w.name, component))}

    # ----------------------------------------------------------------- pods

    def build(self, w: rc.Workload, *, external: topology.LinkSpec | None = None,
              pod_host: int | None = None) -> PodSpec:
        """The pod of ``w``; ``pod_host``: its leased host index in its node's pod subnet (no ``eth0``
        without one)."""
        processes = tuple(self._containers(w))
        sysctls = topology.POD_SYSCTLS if w.kind in (rc.Kind.FRONTEND_LB, rc.Kind.PROXY) else {}
        certs = tuple(pki.CertSpec(self.tls_dir(w.name, p.component), self.identity(w, p.component))
                      for p in processes if self.tls and p.component in _COMPONENTS)
        network: topology.LinkSpec | None = None
        gateways: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()
        if pod_host is not None and w.node:
            node = self.cluster.node(w.node)
            own = node.pod_addresses(pod_host)
            network = topology.pod_link(self.naming, w.node, self.naming.pod_ns(w.name), own,
                                        mtu=self.env.cluster.mtu)
            gateways = node.gateways
            processes = tuple(_with_pod_ip(p, w.node, own) for p in processes)
        return PodSpec(name=w.name, kind=w.kind, netns=self.naming.pod_ns(w.name), spec_hash=w.spec_hash,
                       sysctls=sysctls, processes=processes, external=external, trench=w.trench, node=w.node,
                       certificates=certs, network=network, gateways=gateways)

    def _process(self, w: rc.Workload, component: str, argv: Sequence[str], env: Mapping[str, str],
                 extra: str | None = None, *, stop_timeout_s: float = 10.0) -> ProcessSpec:
        merged = {**env, **self._tls_env(w, component), **scrape.metrics_env(component), **_RESOLVER_ENV,
                  **self.env.components.get(extra or component, {})}
        return ProcessSpec(pod=w.name, component=component, argv=tuple(argv), netns=self.naming.pod_ns(w.name),
                           env=merged, log_path=self.layout.log(w.name, component), stop_timeout_s=stop_timeout_s)

    def _meridio(self, *args: str) -> tuple[str, ...]:
        return (self.python, "-m", "meridio.cli.main", *args)

    def _containers(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        """The one model's containers (:mod:`meridio.runtime.workloads`) as processes of the pod."""
        for c in workloads.containers(w, self):
            yield self._process(w, c.name, self._meridio(*c.args), c.env_dict(),
                                "target" if c.name == "example-target" else None,
                                stop_timeout_s=5.0 if c.name == "example-target" else 10.0)

    # ----------------------------------------------------------------- the one model's Site

    def nsp_config_file(self, trench: str) -> str:
        return str(self.layout.configmap(trench))

    def nsp_datasource(self, trench: str) -> str:
        return str(self.layout.nsp_db(trench))

    def ipam_datasource(self, trench: str) -> str:
        return str(self.layout.ipam_db(trench))

    def ipam_prefixes(self) -> tuple[str, str]:
        return str(self.env.ipam_ipv4), str(self.env.ipam_ipv6)

    def ipam_nodes(self) -> str:
        return ",".join(self.env.nodes)

    def lb_socket_address(self, pod: str) -> str:
        return f"unix:{self.lb_socket(pod)}"

    def lb_bpffs_dir(self, pod: str) -> str:
        return str(self.lb_bpffs(pod))

    def bird_run_dir(self, pod: str) -> str:
        return str(self.layout.pod_dir(pod) / "bird")

    def secrets_dir(self, namespace: str) -> str:
        return str(self.layout.root / "secrets" / namespace)

    def conduit_mtu(self) -> str:
        return str(self.env.cluster.effective_conduit_mtu)

    def proxy_link_socket(self, trench: str, conduit: str, node: str) -> str:
        return str(self.layout.proxy_dir(trench, conduit, node) / "link.sock")

    def proxy_socket_template(self) -> str:
        return self.layout.proxy_socket_template()

    def pod_netns_template(self) -> str:
        return str(pathlib.PurePosixPath(netnsmod.NETNS_DIR, self.naming.pod_ns("{pod}")))

    def tapa_socket_address(self, pod: str) -> str:
        return f"unix:{self.tapa_socket(pod)}"

    def pod_name(self, w: rc.Workload) -> str:
        return w.name

    def node_name(self, w: rc.Workload) -> str:
        return w.node

    def target_ports(self, w: rc.Workload) -> tuple[str, str]:
        dep = self.env.deployment(w.param("deployment"))
        tcp = ",".join(map(str, dep.tcp_ports)) if dep else "4000,4001,4002"
        udp = ",".join(map(str, dep.udp_ports)) if dep else "4003,4004"
        return tcp, udp
