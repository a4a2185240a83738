"""Workload templates (pure): the containers a workload runs — their ``meridio`` arguments, environment,
capabilities and ports — as Meridio's operator gives them. One model, two realisers: the local runtime
runs each container as a process in the pod's network namespace (:mod:`meridio.runtime.local.pods`),
the Kubernetes operator renders it as a container of a StatefulSet, Deployment or DaemonSet
(:mod:`meridio.runtime.kubernetes.workloads`). What differs between the two is only *where* things are
— socket paths, data files, the service addresses, the pod's own name and node — which a :class:`Site`
answers.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

from meridio.runtime import reconcile as rc

__all__ = ["Container", "NSP_PORT", "IPAM_PORT", "Site", "containers", "SYSCTLS"]

NSP_PORT = 7778
IPAM_PORT = 7777

SYSCTLS = {
    "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.fib_multipath_hash_policy": "1", "net.ipv6.fib_multipath_hash_policy": "1",
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
}
"""What Meridio's privileged sysctl init container sets in FE+LB and proxy pods."""


@dataclasses.dataclass(frozen=True)
class Container:
    name: str
    """The component (``nsp``, ``lb``, ``frontend``, ...)."""
    args: tuple[str, ...]
    """``meridio`` arguments (``run nsp``)."""
    env: tuple[tuple[str, str], ...]
    capabilities: tuple[str, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


class Site(Protocol):
    """Where things are for one realiser (paths and addresses as the container sees them)."""

    def nsp_address(self, trench: str) -> str: ...
    def ipam_address(self, trench: str) -> str: ...
    def nsp_template(self) -> str: ...
    def nsp_config_file(self, trench: str) -> str: ...
    def nsp_datasource(self, trench: str) -> str: ...
    def ipam_datasource(self, trench: str) -> str: ...
    def ipam_prefixes(self) -> tuple[str, str]: ...
    def ipam_nodes(self) -> str: ...
    def lb_socket_address(self, pod: str) -> str: ...
    def lb_bpffs_dir(self, pod: str) -> str: ...
    def bird_run_dir(self, pod: str) -> str: ...
    def secrets_dir(self, namespace: str) -> str: ...
    def conduit_mtu(self) -> str: ...
    def proxy_link_socket(self, trench: str, conduit: str, node: str) -> str: ...
    def proxy_socket_template(self) -> str: ...
    def pod_netns_template(self) -> str: ...
    def tapa_socket_address(self, pod: str) -> str: ...
    def pod_name(self, w: rc.Workload) -> str: ...
    def node_name(self, w: rc.Workload) -> str: ...
    def target_ports(self, w: rc.Workload) -> tuple[str, str]: ...


def _c(name: str, args: tuple[str, ...], env: dict[str, str], *, caps: tuple[str, ...] = (),
       ports: tuple[tuple[str, int], ...] = ()) -> Container:
    return Container(name, args, tuple(env.items()), caps, ports)


def containers(w: rc.Workload, site: Site) -> tuple[Container, ...]:
    """The containers of ``w``, in start order."""
    t, pod = w.trench, site.pod_name(w)
    if w.kind is rc.Kind.NSP:
        return (_c("nsp", ("run", "nsp"), {
            "NSP_LISTEN_ADDRESS": "[::]", "NSP_PORT": str(NSP_PORT), "NSP_TRENCH_NAME": t,
            "NSP_CONFIG_FILE": site.nsp_config_file(t), "NSP_DATASOURCE": site.nsp_datasource(t),
            "NSP_LOG_LEVEL": "INFO"}, ports=(("grpc", NSP_PORT), ("metrics", 2225))),)
    if w.kind is rc.Kind.IPAM:
        v4, v6 = site.ipam_prefixes()
        return (_c("ipam", ("run", "ipam"), {
            "IPAM_LISTEN_ADDRESS": "[::]", "IPAM_PORT": str(IPAM_PORT), "IPAM_TRENCH_NAME": t,
            "IPAM_NSP_SERVICE": site.nsp_address(t), "IPAM_PREFIX_IPV4": v4, "IPAM_PREFIX_IPV6": v6,
            "IPAM_IP_FAMILY": w.param("ip-family", "dualstack"), "IPAM_DATASOURCE": site.ipam_datasource(t),
            "IPAM_NODES": site.ipam_nodes(), "IPAM_LOG_LEVEL": "INFO"},
            ports=(("grpc", IPAM_PORT), ("metrics", 2226))),)
    if w.kind is rc.Kind.FRONTEND_LB:
        lb_socket = site.lb_socket_address(pod)
        out = []
        if w.param("conduit"):
            out.append(_c("lb", ("run", "lb"), {
                "NSM_CONDUIT_NAME": w.param("conduit"), "NSM_TRENCH_NAME": t, "NSM_NAMESPACE": w.namespace,
                "NSM_NSP_SERVICE": site.nsp_address(t), "NSM_SOCKET": lb_socket, "NSM_HOSTNAME": pod,
                "NSM_FASTPATH_BPFFS": site.lb_bpffs_dir(pod), "NSM_LOG_LEVEL": "INFO"},
                caps=("NET_ADMIN", "IPC_LOCK", "IPC_OWNER", "BPF", "PERFMON", "SYS_ADMIN"),
                ports=(("metrics", 2223),)))
        out.append(_c("frontend", ("run", "frontend"), {
            "NFE_NSP_SERVICE": site.nsp_address(t), "NFE_TRENCH_NAME": t, "NFE_NAMESPACE": w.namespace,
            "NFE_ATTRACTOR_NAME": w.param("attractor"), "NFE_EXTERNAL_INTERFACE": w.param("interface"),
            "NFE_HOSTNAME": pod, "NFE_LB_SOCKET": lb_socket, "NFE_ECMP": "true", "NFE_LOG_BIRD": "false",
            "NFE_BIRD_RUN_DIR": site.bird_run_dir(pod), "NFE_BIRD_LOG_FILE": "",
            "NFE_SECRETS_DIR": site.secrets_dir(w.namespace),
            "NFE_BGP_CONNECT_RETRY_TIME": "1", "NFE_BGP_ERROR_WAIT_TIME": "1,2", "NFE_BGP_CONNECT_DELAY_TIME": "1",
            "NFE_LOG_LEVEL": "INFO"}, caps=("NET_ADMIN", "NET_BIND_SERVICE"), ports=(("metrics", 2224),)))
        return tuple(out)
    if w.kind is rc.Kind.PROXY:
        conduit, node = w.param("conduit"), site.node_name(w)
        return (_c("proxy", ("run", "proxy"), {
            "NSM_CONDUIT": conduit, "NSM_TRENCH": t, "NSM_HOST": node, "NSM_NAMESPACE": w.namespace,
            "NSM_IPAM_SERVICE": site.ipam_address(t), "NSM_NSP_SERVICE": site.nsp_address(t),
            "NSM_IP_FAMILY": w.param("ip-family", "dualstack"), "NSM_MTU": site.conduit_mtu(),
            "NSM_LINK_SOCKET": site.proxy_link_socket(t, conduit, node),
            "NSM_POD_NETNS": site.pod_netns_template(), "NSM_LOG_LEVEL": "INFO"},
            caps=("NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"), ports=(("metrics", 2227),)),)
    if w.kind is rc.Kind.TARGET:
        tcp, udp = site.target_ports(w)
        return (
            _c("example-target", ("example-target", "--name", pod, "--tcp-ports", tcp, "--udp-ports", udp), {}),
            _c("tapa", ("run", "tapa"), {
                "MERIDIO_NAME": pod, "MERIDIO_NAMESPACE": w.namespace, "MERIDIO_NODE": site.node_name(w),
                "MERIDIO_SOCKET": site.tapa_socket_address(pod), "MERIDIO_NSP_SERVICE": site.nsp_template(),
                "MERIDIO_PROXY_SOCKET": site.proxy_socket_template(), "MERIDIO_LOG_LEVEL": "INFO"},
                ports=(("metrics", 2228),)),
        )
    raise ValueError(f"no containers for workload kind {w.kind}")  # pragma: no cover - every Kind is above
