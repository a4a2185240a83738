"""Workloads as local pods: a namespace, maybe an external link, and the component processes (pure).

:class:`PodBuilder` turns a :class:`~meridio.runtime.reconcile.Workload` into a :class:`PodSpec`: the
namespace and its sysctls (Meridio's ``sysctl-init``), the FE's external link onto its segment, and
one :class:`ProcessSpec` per container with the settings Meridio's operator would give it as
environment variables, pointed at the environment's unix sockets:

- NSP and IPAM listen on ``unix:<state>/trenches/<trench>/nsp.sock`` and ``.../ipam.sock``;
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
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pki, scrape, topology
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


_COMPONENTS = {"nsp": identitymod.Component.NSP, "ipam": identitymod.Component.IPAM, "lb": identitymod.Component.LB,
               "frontend": identitymod.Component.FRONTEND, "proxy": identitymod.Component.PROXY,
               "tapa": identitymod.Component.TAPA}
"""The processes that talk gRPC to other components, and the identity component each has."""
_NODE_BOUND = frozenset({identitymod.Component.PROXY, identitymod.Component.TAPA, identitymod.Component.LB,
                         identitymod.Component.FRONTEND})


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
        self.tls = tls
        """Mutual TLS between the components (off only for compatibility tests)."""

    # ----------------------------------------------------------------- addresses

    def nsp_address(self, trench: str) -> str:
        return f"unix:{self.layout.nsp_socket(trench)}"

    def ipam_address(self, trench: str) -> str:
        return f"unix:{self.layout.ipam_socket(trench)}"

    def nsp_template(self) -> str:
        return f"unix:{self.layout.nsp_socket('{trench}')}"

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

    def build(self, w: rc.Workload, *, external: topology.LinkSpec | None = None) -> PodSpec:
        build = {rc.Kind.NSP: self._nsp, rc.Kind.IPAM: self._ipam, rc.Kind.FRONTEND_LB: self._fe_lb,
                 rc.Kind.PROXY: self._proxy, rc.Kind.TARGET: self._target}[w.kind]
        processes = tuple(build(w))
        sysctls = topology.POD_SYSCTLS if w.kind in (rc.Kind.FRONTEND_LB, rc.Kind.PROXY) else {}
        certs = tuple(pki.CertSpec(self.tls_dir(w.name, p.component), self.identity(w, p.component))
                      for p in processes if self.tls and p.component in _COMPONENTS)
        return PodSpec(name=w.name, kind=w.kind, netns=self.naming.pod_ns(w.name), spec_hash=w.spec_hash,
                       sysctls=sysctls, processes=processes, external=external, trench=w.trench, node=w.node,
                       certificates=certs)

    def _process(self, w: rc.Workload, component: str, argv: Sequence[str], env: Mapping[str, str],
                 extra: str | None = None, *, stop_timeout_s: float = 10.0) -> ProcessSpec:
        merged = {**env, **self._tls_env(w, component), **scrape.metrics_env(component),
                  **self.env.components.get(extra or component, {})}
        return ProcessSpec(pod=w.name, component=component, argv=tuple(argv), netns=self.naming.pod_ns(w.name),
                           env=merged, log_path=self.layout.log(w.name, component), stop_timeout_s=stop_timeout_s)

    def _meridio(self, *args: str) -> tuple[str, ...]:
        return (self.python, "-m", "meridio.cli.main", *args)

    def _nsp(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        t = w.trench
        yield self._process(w, "nsp", self._meridio("run", "nsp"), {
            "NSP_LISTEN_ADDRESS": self.nsp_address(t), "NSP_TRENCH_NAME": t,
            "NSP_CONFIG_FILE": str(self.layout.configmap(t)), "NSP_DATASOURCE": str(self.layout.nsp_db(t)),
            "NSP_LOG_LEVEL": "INFO"})

    def _ipam(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        t = w.trench
        yield self._process(w, "ipam", self._meridio("run", "ipam"), {
            "IPAM_LISTEN_ADDRESS": self.ipam_address(t), "IPAM_TRENCH_NAME": t,
            "IPAM_NSP_SERVICE": self.nsp_address(t), "IPAM_PREFIX_IPV4": str(self.env.ipam_ipv4),
            "IPAM_PREFIX_IPV6": str(self.env.ipam_ipv6), "IPAM_IP_FAMILY": w.param("ip-family", "dualstack"),
            "IPAM_DATASOURCE": str(self.layout.ipam_db(t)), "IPAM_NODES": ",".join(self.env.nodes),
            "IPAM_LOG_LEVEL": "INFO"})

    def _fe_lb(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        t, pod_dir = w.trench, self.layout.pod_dir(w.name)
        lb_socket = f"unix:{self.lb_socket(w.name)}"
        if w.param("conduit"):
            yield self._process(w, "lb", self._meridio("run", "lb"), {
                "NSM_CONDUIT_NAME": w.param("conduit"), "NSM_TRENCH_NAME": t, "NSM_NAMESPACE": w.namespace,
                "NSM_NSP_SERVICE": self.nsp_address(t), "NSM_SOCKET": lb_socket, "NSM_HOSTNAME": w.name,
                "NSM_FASTPATH_BPFFS": str(self.lb_bpffs(w.name)), "NSM_LOG_LEVEL": "INFO"})
        yield self._process(w, "frontend", self._meridio("run", "frontend"), {
            "NFE_NSP_SERVICE": self.nsp_address(t), "NFE_TRENCH_NAME": t, "NFE_NAMESPACE": w.namespace,
            "NFE_ATTRACTOR_NAME": w.param("attractor"), "NFE_EXTERNAL_INTERFACE": w.param("interface"),
            "NFE_HOSTNAME": w.name, "NFE_LB_SOCKET": lb_socket, "NFE_ECMP": "true", "NFE_LOG_BIRD": "false",
            "NFE_BIRD_RUN_DIR": str(pod_dir / "bird"), "NFE_BIRD_LOG_FILE": "",
            "NFE_SECRETS_DIR": str(self.layout.root / "secrets" / w.namespace),
            "NFE_BGP_CONNECT_RETRY_TIME": "1", "NFE_BGP_ERROR_WAIT_TIME": "1,2", "NFE_BGP_CONNECT_DELAY_TIME": "1",
            "NFE_LOG_LEVEL": "INFO"})

    def _proxy(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        t, conduit = w.trench, w.param("conduit")
        yield self._process(w, "proxy", self._meridio("run", "proxy"), {
            "NSM_CONDUIT": conduit, "NSM_TRENCH": t, "NSM_HOST": w.node, "NSM_NAMESPACE": w.namespace,
            "NSM_IPAM_SERVICE": self.ipam_address(t), "NSM_NSP_SERVICE": self.nsp_address(t),
            "NSM_IP_FAMILY": w.param("ip-family", "dualstack"),
            "NSM_LINK_SOCKET": str(self.layout.proxy_dir(t, conduit, w.node) / "link.sock"),
            "NSM_POD_NETNS": str(pathlib.PurePosixPath(netnsmod.NETNS_DIR, self.naming.pod_ns("{pod}"))),
            "NSM_LOG_LEVEL": "INFO"})

    def _target(self, w: rc.Workload) -> Iterator[ProcessSpec]:
        dep = self.env.deployment(w.param("deployment"))
        tcp = ",".join(map(str, dep.tcp_ports)) if dep else "4000,4001,4002"
        udp = ",".join(map(str, dep.udp_ports)) if dep else "4003,4004"
        yield self._process(w, "example-target", self._meridio(
            "example-target", "--name", w.name, "--tcp-ports", tcp, "--udp-ports", udp), {}, "target",
            stop_timeout_s=5.0)
        yield self._process(w, "tapa", self._meridio("run", "tapa"), {
            "MERIDIO_NAME": w.name, "MERIDIO_NAMESPACE": w.namespace, "MERIDIO_NODE": w.node,
            "MERIDIO_SOCKET": f"unix:{self.tapa_socket(w.name)}", "MERIDIO_NSP_SERVICE": self.nsp_template(),
            "MERIDIO_PROXY_SOCKET": self.layout.proxy_socket_template(), "MERIDIO_LOG_LEVEL": "INFO"})
