"""Names and paths of one local environment: namespaces, interfaces, the state directory (pure).

Every namespace the runtime makes starts with ``<prefix>-`` so ``meridio down`` can find them all
and several environments (different prefixes) never collide:

- ``<prefix>-pod-<pod>``: a pod (``nsp-trench-a``, ``stateless-lb-frontend-attractor-a-1-0``,
  ``proxy-conduit-a-1-node-1``, ``target-a-0``);
- ``<prefix>-net-<network>``: an external segment (bridge ``br0``);
- ``<prefix>-rtr-<router>``: a gateway router (BIRD), ``<prefix>-tg-<router>``: its traffic generator;
- ``<prefix>-node-<node>``: a node of the cluster network (its pods' bridge ``cni0``, its underlay leg
  ``ul0``), ``<prefix>-underlay``: the underlay segment the nodes share (bridge ``br0``).

The state directory (``/var/lib/meridio/<env>/`` unless ``MERIDIO_STATE_DIR``) holds the runtime
socket and pid file, the resource store, per-trench NSP/IPAM files and sockets, per-pod sockets, the
routers' BIRD files and one log per process. Unix socket paths must stay under 108 bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

__all__ = ["DEFAULT_STATE_BASE", "Naming", "StateLayout", "port_name", "state_root"]

DEFAULT_STATE_BASE = pathlib.Path("/var/lib/meridio")


def state_root(env_name: str) -> pathlib.Path:
    """``$MERIDIO_STATE_DIR`` if set (the environment's own directory), else ``/var/lib/meridio/<env>``."""
    override = os.environ.get("MERIDIO_STATE_DIR")
    return pathlib.Path(override) if override else DEFAULT_STATE_BASE / env_name


def port_name(owner: str, lead: str = "p") -> str:
    """A stable interface name (10 chars) for ``owner``'s port on a shared bridge."""
    return lead + hashlib.sha256(owner.encode()).hexdigest()[:9]


@dataclasses.dataclass(frozen=True)
class Naming:
    prefix: str

    @property
    def ns_prefix(self) -> str:
        return f"{self.prefix}-"

    def pod_ns(self, pod: str) -> str:
        return f"{self.prefix}-pod-{pod}"

    def network_ns(self, network: str) -> str:
        return f"{self.prefix}-net-{network}"

    def router_ns(self, router: str) -> str:
        return f"{self.prefix}-rtr-{router}"

    def tg_ns(self, router: str) -> str:
        return f"{self.prefix}-tg-{router}"

    def node_ns(self, node: str) -> str:
        return f"{self.prefix}-node-{node}"

    @property
    def underlay_ns(self) -> str:
        return f"{self.prefix}-underlay"

    def owns(self, ns: str) -> bool:
        return ns.startswith(self.ns_prefix)


@dataclasses.dataclass(frozen=True)
class StateLayout:
    root: pathlib.Path

    @property
    def control_socket(self) -> pathlib.Path:
        return self.root / "runtime.sock"

    @property
    def daemon_pid(self) -> pathlib.Path:
        return self.root / "runtime.pid"

    @property
    def daemon_log(self) -> pathlib.Path:
        return self.logs / "runtime.log"

    @property
    def store(self) -> pathlib.Path:
        return self.root / "store.db"

    @property
    def environment_file(self) -> pathlib.Path:
        return self.root / "environment.yaml"

    @property
    def environment_base(self) -> pathlib.Path:
        """The directory the environment file's relative resource paths resolve against."""
        return self.root / "environment.base"

    @property
    def logs(self) -> pathlib.Path:
        return self.root / "logs"

    @property
    def pki(self) -> pathlib.Path:
        """The environment's CA (``ca.key``, ``ca.crt``) and, in ``runtime/``, the daemon's own certificate."""
        return self.root / "pki"

    @property
    def runtime_tls(self) -> pathlib.Path:
        return self.pki / "runtime"

    @property
    def pids(self) -> pathlib.Path:
        return self.root / "pids"

    def log(self, pod: str, component: str) -> pathlib.Path:
        return self.logs / pod / f"{component}.log"

    def trench_dir(self, trench: str) -> pathlib.Path:
        return self.root / "trenches" / trench

    def configmap(self, trench: str) -> pathlib.Path:
        return self.trench_dir(trench) / "configmap.yaml"

    def nsp_socket(self, trench: str) -> pathlib.Path:
        """The runtime's port-forward to the trench's NSP (the components reach it over TCP)."""
        return self.trench_dir(trench) / "nsp.sock"

    def nsp_db(self, trench: str) -> pathlib.Path:
        return self.trench_dir(trench) / "nsp.db"

    def ipam_db(self, trench: str) -> pathlib.Path:
        return self.trench_dir(trench) / "ipam.db"

    def pod_dir(self, pod: str) -> pathlib.Path:
        return self.root / "pods" / pod

    def proxy_socket_template(self) -> str:
        """Where the proxy of ``{conduit}`` in ``{trench}`` on ``{node}`` serves its link service."""
        return str(self.root / "proxies" / "{trench}" / "{conduit}" / "{node}" / "link.sock")

    def proxy_dir(self, trench: str, conduit: str, node: str) -> pathlib.Path:
        return self.root / "proxies" / trench / conduit / node

    @property
    def monitoring_file(self) -> pathlib.Path:
        """The ports the runtime's HTTP endpoint and its Prometheus listen on (JSON), for clients."""
        return self.root / "monitoring.json"

    @property
    def prometheus_dir(self) -> pathlib.Path:
        return self.root / "prometheus"

    def router_dir(self, router: str) -> pathlib.Path:
        return self.root / "routers" / router
