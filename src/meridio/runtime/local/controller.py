"""The local runtime controller: the one owner of an environment's pods, processes and stored resources.

Every mutation (``up``, ``apply``, ``delete``, ``scale``, ``down``) runs under one lock, so the
controller's view never changes halfway through another one. ``reconcile`` is level-triggered: it
recomputes the desired workloads from the stored resources with the pure
:func:`meridio.runtime.reconcile.desired`, rewrites the trench ConfigMap files that changed (NSP picks
them up), and starts or stops only the pods whose spec changed (:func:`meridio.runtime.reconcile.plan`).

Mutual TLS (:mod:`meridio.runtime.local.pki`): the environment's CA issues every certificate a pod
lists before the pod's processes start, and :meth:`Controller.rotate_certificates` renews them from
their half-life on while the environment runs (the daemon calls it every
:func:`~meridio.runtime.local.pki.check_interval`).

Kernel work (namespaces, links, sysctls) runs in worker threads, pods in parallel. The external side
(segments, gateway routers, traffic generators) and the cluster network (underlay, nodes) are made once
by ``up`` and repaired by every ``up``. Each pod on a node gets ``eth0`` with a host index leased in its
node's pod subnet (kept across restarts, released with the pod) and an ``/etc/hosts`` naming the
trenches' NSP and IPAM services; the daemon reaches each NSP through a port-forward socket
(:mod:`meridio.runtime.local.portforward`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Callable, Sequence

from meridio.api import configmap, resources, tapaclient, validation, yamlio
from meridio.api.problems import ProblemsError
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.kernel import bpf
from meridio.kernel import netns as netnsmod
from meridio.runtime import reconcile as rc
from meridio.runtime.local import cluster, pki, pods, portforward, routers, topology
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming, StateLayout
from meridio.runtime.local.store import Store
from meridio.runtime.local.supervisor import ProcessSpec, Supervisor

__all__ = ["ApplyResult", "Controller", "Progress", "ControllerError"]

Progress = Callable[[str], None]


class ControllerError(Exception):
    """A user-facing failure of a runtime operation (one sentence)."""


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    lines: tuple[str, ...]
    """kubectl-like: ``trench.meridio.nordix.org/trench-a created|configured|unchanged|deleted``."""


def _label(obj: resources.Resource) -> str:
    group = "k8s.cni.cncf.io" if obj.KIND == "NetworkAttachmentDefinition" else resources.GROUP
    return f"{obj.KIND.lower()}.{group}/{obj.name}"


class Controller:
    def __init__(self, env: envmod.Environment, layout: StateLayout, *, log: logmod.Logger = logmod.null,
                 tls: bool = True, cert_lifetime_s: float = pki.DEFAULT_LIFETIME_S,
                 now: Callable[[], float] = time.time) -> None:
        self.env, self.layout, self.log = env, layout, log
        self.naming = Naming(env.prefix)
        self.builder = pods.PodBuilder(env, layout, self.naming, tls=tls)
        self.cert_lifetime_s = cert_lifetime_s
        """Lifetime of the component certificates, in seconds (renewed from half of it on)."""
        self._now = now
        self._ca: pki.Ca | None = None
        self._issuing = threading.Lock()  # pods are prepared in worker threads, rotation runs in another
        self.store = Store(layout.store)
        self.sup = Supervisor(pid_dir=layout.pids, log=log, on_restart=self._process_restarted)
        self.pods: dict[str, pods.PodSpec] = {}
        self.blocked: dict[str, str] = {}
        """Pods that cannot be realised, and why (no external network for their NAD, ...)."""
        self.desired: rc.Desired | None = None
        self.lock = asyncio.Lock()
        self._openers: dict[str, asyncio.Task[None]] = {}
        self.side_processes: list[ProcessSpec] = []
        """Processes beside the pods that ``up`` keeps running (the environment's Prometheus)."""
        self._services: dict[str, tuple[cluster.Address, ...]] = {}
        """Service name → the addresses of the pod serving it (every pod's ``/etc/hosts``)."""
        self._forwards: dict[str, portforward.PortForward] = {}
        """Per trench, the daemon's port-forward to its NSP."""
        self.awaiting_streams: dict[str, set[str]] = {}
        """Streams (``trench/conduit/stream``) a freshly started target pod opened and whose outcome (not
        PENDING) its TAPA has not shown yet; readiness waits for them once, then forgets them."""

    # ------------------------------------------------------------------ lifecycle

    def adopt(self) -> list[str]:
        """Take note of the processes a previous controller left running; ``up`` takes them over."""
        return self.sup.adopt()

    async def up(self, progress: Progress) -> None:
        async with self.lock:
            progress(f"external side: {len(self.env.networks)} segments, {len(self.env.routers)} gateway routers")
            await asyncio.to_thread(topology.ensure_external, self.env, self.naming)
            progress(f"cluster network: {len(self.env.nodes)} nodes on an underlay segment")
            await asyncio.to_thread(topology.ensure_cluster, self.env, self.naming)
            self._start_routers()
            if self.builder.tls:
                await asyncio.to_thread(self._ensure_certificates, [self.builder.runtime_certificate()])
            for spec in self.side_processes:
                self.sup.ensure(spec)
            if self.store.get_meta("initialized") is None:
                await self._apply_initial(progress)
            await self._reconcile(progress)
            await asyncio.to_thread(self._repair_kept_pods)
            replaced = self.sup.restart_misplaced()
            if replaced:
                progress(f"restarting {len(replaced)} processes whose namespace was made again")
            await asyncio.to_thread(self.sup.stop_unclaimed)
            await asyncio.to_thread(self._remove_stray_pods)

    async def _apply_initial(self, progress: Progress) -> None:
        try:
            objs = resources.load_files(self.env.resources)
        except OSError as exc:
            raise ControllerError(f"cannot read a resource file of the environment: {exc}") from None
        except ProblemsError as exc:
            raise ControllerError("the environment's resources are invalid: "
                                  + "; ".join(map(str, exc.problems))) from None
        try:
            state = validation.apply_state(self.store.resources(), objs, self.log)
        except ProblemsError as exc:
            raise ControllerError("the environment's resources are invalid: "
                                  + "; ".join(map(str, exc.problems))) from None
        self.store.replace_resources(state)
        self.store.set_meta({"initialized": "1"})
        progress(f"resources: {len(objs)} objects from {len(self.env.resources)} files")

    async def shutdown(self) -> None:
        """Stop every process (namespaces stay: ``up`` resumes). Used on SIGTERM."""
        async with self.lock:
            for task in self._openers.values():
                task.cancel()
            await self._stop_pods_in_order(list(self.pods), remove=False)
            await self.sup.stop_all()
            await self._close_forwards(set(self._forwards))

    async def down(self, progress: Progress) -> list[str]:
        """Stop everything, remove every namespace of the environment. The caller removes the state dir."""
        async with self.lock:
            for task in self._openers.values():
                task.cancel()
            progress(f"stopping {len(self.sup.names())} processes")
            await self._stop_pods_in_order(list(self.pods), remove=False)
            await self.sup.stop_all()
            await self._close_forwards(set(self._forwards))
            gone = await asyncio.to_thread(topology.remove_namespaces, self.naming)
            progress(f"removed {len(gone)} namespaces")
            return gone

    # ------------------------------------------------------------------ user operations

    async def apply(self, text: str, source: str) -> ApplyResult:
        objs = _parse(text, source)
        async with self.lock:
            existing = self.store.resources()
            try:
                state = validation.apply_state(existing, objs, self.log)
            except ProblemsError as exc:
                raise ControllerError("\n".join(map(str, exc.problems))) from None
            before = {o.ref: o for o in existing}
            lines = tuple(f"{_label(o)} {_verb(before.get(o.ref), o)}" for o in objs)
            self.store.replace_resources(state)
            await self._reconcile(self.log.info)
            return ApplyResult(lines)

    async def delete(self, text: str | None, source: str, refs: Sequence[tuple[str, str, str]] = ()) -> ApplyResult:
        wanted = [o.ref for o in _parse(text, source)] if text else list(refs)
        async with self.lock:
            existing = self.store.resources()
            problems = validation.validate_delete(existing, wanted)
            if problems:
                raise ControllerError("\n".join(map(str, problems)))
            removed = validation.plan_delete(existing, wanted)
            self.store.replace_resources([o for o in existing if o not in removed])
            await self._reconcile(self.log.info)
            return ApplyResult(tuple(f"{_label(o)} deleted" for o in removed))

    async def scale(self, deployment: str, replicas: int) -> str:
        if self.env.deployment(deployment) is None:
            names = ", ".join(d.name for d in self.env.deployments) or "none"
            raise ControllerError(f'deployment "{deployment}" not found (deployments: {names})')
        async with self.lock:
            [dep] = [d for d in self.deployments() if d.name == deployment]
            limit, why = rc.replica_limit(self.store.resources(), dep)
            if not 0 <= replicas <= limit:
                raise ControllerError(f"--replicas: {replicas} must be between 0 and {limit} ({why})")
            self.store.set_replicas(deployment, replicas)
            await self._reconcile(self.log.info)
        return f"deployment.apps/{deployment} scaled"

    def resources(self) -> list[resources.Resource]:
        return self.store.resources()

    def opening(self) -> list[str]:
        """The target pods whose start-up streams are still being opened."""
        return [n for n, t in self._openers.items() if not t.done()]

    def deployments(self) -> list[rc.TargetDeployment]:
        scale = self.store.replicas()
        return [rc.TargetDeployment(d.name, scale.get(d.name, d.replicas),
                                    tuple(f"{s.trench}/{s.conduit}/{s.stream}" for s in d.streams), d.namespace)
                for d in self.env.deployments]

    # ------------------------------------------------------------------ reconcile

    async def _reconcile(self, progress: Progress) -> None:
        want = rc.desired(self.store.resources(), nodes=self.env.nodes, deployments=self.deployments())
        await asyncio.to_thread(self._write_configmaps, want)
        step = rc.plan({n: p.spec_hash for n, p in self.pods.items()}, want)
        self.blocked = {}
        if step.stop:
            progress(f"stopping {len(step.stop)} pods")
            await self._stop_pods_in_order(list(step.stop))
        gone = {w.trench for w in (self.desired.workloads if self.desired else ()) if w.trench} - set(want.configmaps)
        await self._close_forwards(gone)
        for trench in gone:
            await asyncio.to_thread(shutil.rmtree, self.layout.trench_dir(trench), True)
        self._services = self._service_addresses(want)
        if step.start:
            progress(f"starting {len(step.start)} pods")
            specs = [s for s in (self._pod_spec(w) for w in step.start) if s is not None]
            await asyncio.gather(*(self._start_pod(s) for s in specs))
        await asyncio.to_thread(self._write_all_hosts)
        await self._open_forwards(set(want.configmaps))
        self.desired = want
        self._refresh_static_routers()

    def _write_configmaps(self, want: rc.Desired) -> None:
        for trench, data in want.configmaps.items():
            path = self.layout.configmap(trench)
            text = yamlio.dump({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": configmap.configmap_name(trench)}, "data": dict(data)})
            if path.exists() and path.read_text() == text:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename, synced: the NSP polls this file and must never read half of it, and a
            # crash (or power cut) must leave the old file or the new one, not an empty one.
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)

    def _pod_spec(self, w: rc.Workload) -> pods.PodSpec | None:
        external = None
        if w.kind is rc.Kind.FRONTEND_LB:
            external_or_reason = self._external_link(w)
            if isinstance(external_or_reason, str):
                self.blocked[w.name] = external_or_reason
                self.log.warning("podBlocked", pod=w.name, reason=external_or_reason)
                return None
            external = external_or_reason
        return self.builder.build(w, external=external, pod_host=self._pod_host(w))

    def _pod_host(self, w: rc.Workload) -> int | None:
        """The host index of ``w``'s ``eth0`` in its node's pod subnet (leased: stable across restarts)."""
        return self.store.lease(f"pods/{w.node}", w.name, cluster.POD_HOSTS) if w.node else None

    def _service_addresses(self, want: rc.Desired) -> dict[str, tuple[cluster.Address, ...]]:
        """Meridio's service names of every trench's NSP and IPAM, on the addresses of their pods."""
        out: dict[str, tuple[cluster.Address, ...]] = {}
        names = {rc.Kind.NSP: cluster.nsp_service, rc.Kind.IPAM: cluster.ipam_service}
        for w in want.workloads:
            host = self._pod_host(w) if w.kind in names else None
            if host is not None:
                addrs = self.builder.cluster.node(w.node).pod_addresses(host)
                out[names[w.kind](w.trench)] = tuple(a.ip for a in addrs)
        return out

    def _write_hosts(self, spec: pods.PodSpec) -> None:
        if spec.network is not None:
            own = [cluster.interface(a) for a in spec.network.addresses]
            netnsmod.write_etc(spec.netns, "hosts", cluster.hosts_file(spec.name, own, self._services))

    def _write_all_hosts(self) -> None:
        for spec in list(self.pods.values()):
            if netnsmod.exists(spec.netns):
                self._write_hosts(spec)

    async def _open_forwards(self, trenches: set[str]) -> None:
        for trench in sorted(trenches - set(self._forwards)):
            fwd = portforward.PortForward(self.layout.nsp_socket(trench), self.naming.pod_ns(rc.nsp_pod_name(trench)),
                                          "127.0.0.1", cluster.NSP_PORT, log=self.log)
            try:
                await fwd.start()
            except OSError as exc:
                self.log.error("portForwardFailed", trench=trench, error=str(exc))
                continue
            self._forwards[trench] = fwd

    async def _close_forwards(self, trenches: set[str]) -> None:
        for trench in trenches:
            fwd = self._forwards.pop(trench, None)
            if fwd is not None:
                await fwd.close()

    def _external_link(self, w: rc.Workload) -> topology.LinkSpec | str:
        nad_ref = w.param("network-attachment")
        nad = self._nad(nad_ref) if nad_ref else None
        vlan = int(w.param("vlan-id")) if w.param("vlan-id") else (nad.vlan if nad else None)
        net = self.env.network_for(attachment=nad_ref or None, vlan=vlan)
        if net is None:
            what = f"network attachment {nad_ref}" if nad_ref else f"VLAN {vlan}"
            return f"no external network of the environment serves {what}"
        reserved = [a for r in self.env.routers_on(net.name) for a in (r.ipv4, r.ipv6) if a is not None]
        host = self.store.lease(net.name, w.name, pods.host_candidates(net, reserved=reserved, nad=nad))
        return topology.external_link(self.naming, net, self.naming.pod_ns(w.name), w.param("interface"),
                                      topology.fe_address(net, host))

    def _nad(self, ref: str) -> pods.Nad | None:
        namespace, _, name = ref.rpartition("/")
        for obj in self.store.resources():
            if isinstance(obj, resources.NetworkAttachmentDefinition) and obj.name == name and \
                    obj.namespace == (namespace or "default"):
                return pods.parse_nad(obj)
        return None

    async def _start_pod(self, spec: pods.PodSpec) -> None:
        try:
            await asyncio.to_thread(self._prepare_pod, spec)
        except topology.TopologyError as exc:
            self.blocked[spec.name] = f"namespace setup failed: {exc}"
            self.log.error("podSetupFailed", pod=spec.name, error=str(exc))
            return
        started = {proc.component: self.sup.ensure(proc) for proc in spec.processes}
        self.pods[spec.name] = spec
        if spec.kind is rc.Kind.TARGET and started.get("tapa"):  # an adopted TAPA keeps the streams it has
            self._start_opener(spec)

    def _repair_kept_pods(self) -> None:
        """Namespaces and external links of running pods, made again where they went missing."""
        for spec in list(self.pods.values()):
            try:
                self._prepare_pod(spec)
            except topology.TopologyError as exc:
                self.blocked[spec.name] = f"namespace setup failed: {exc}"
                self.log.error("podRepairFailed", pod=spec.name, error=str(exc))

    def _process_restarted(self, proc: ProcessSpec) -> None:
        """A restarted TAPA has lost its streams: open the ones its deployment opens at start again."""
        spec = self.pods.get(proc.pod)
        if spec is not None and spec.kind is rc.Kind.TARGET and proc.component == "tapa":
            self._start_opener(spec)

    def _prepare_pod(self, spec: pods.PodSpec) -> None:
        topology.ensure_namespace(spec.netns, spec.sysctls)
        if spec.network is not None:
            topology.ensure_pod_network(spec.network, spec.gateways)
            self._write_hosts(spec)  # before any process starts: `ip netns exec` mounts it at start
        if spec.external is not None:
            topology.ensure_link(spec.external)
        self.layout.pod_dir(spec.name).mkdir(parents=True, exist_ok=True)
        if spec.kind is rc.Kind.FRONTEND_LB:
            # the LB's fast path pins here; mounted in the runtime's mount namespace, so the pins outlive
            # the LB process (``ip netns exec`` gives each process a mount namespace of its own)
            try:
                bpf.mount_bpffs(self.builder.lb_bpffs(spec.name))
            except bpf.BpfError as exc:
                self.log.warning("bpffsNotMounted", pod=spec.name, error=str(exc))
        self._ensure_certificates(spec.certificates)

    # ------------------------------------------------------------------ certificates

    def _ensure_certificates(self, specs: Sequence[pki.CertSpec], *, force: bool = False) -> int:
        if not specs:
            return 0
        with self._issuing:
            if self._ca is None:
                self._ca = pki.Ca.load_or_create(self.layout.pki, self.env.name, now=self._now())
            return sum(self._ca.ensure(cert, now=self._now(), lifetime_s=self.cert_lifetime_s, force=force)
                       for cert in specs)

    def certificates(self) -> list[pki.CertSpec]:
        """Every certificate of the environment: the runtime's own and those of the running pods."""
        if not self.builder.tls:
            return []
        return [self.builder.runtime_certificate(), *(c for p in list(self.pods.values()) for c in p.certificates)]

    def rotate_certificates(self, *, force: bool = False) -> int:
        """Renew the certificates past their half-life (every one with ``force``); returns how many
        (blocking file work: run it in a thread)."""
        # A pod removed meanwhile keeps no directory: do not make it again.
        live = [c for c in self.certificates() if c.directory.parent.parent.is_dir()]
        issued = self._ensure_certificates(live, force=force)
        if issued:
            self.log.info("certificatesRenewed", count=issued, forced=force)
        return issued

    async def _stop_pods_in_order(self, names: list[str], *, remove: bool = True) -> None:
        """Stop pods by kind, each kind in parallel: targets first (their TAPAs unregister and disconnect
        while NSP and proxies still answer), then FE+LB, proxies, IPAM and NSP last."""
        kinds = {n: self.pods[n].kind if n in self.pods else rc.Kind.NSP for n in names}
        for kind in _STOP_ORDER:
            batch = [n for n in names if kinds[n] is kind]
            if batch:
                await asyncio.gather(*(self._stop_pod(n, remove=remove) for n in batch))

    async def _stop_pod(self, name: str, *, remove: bool = True) -> None:
        spec = self.pods.pop(name, None)
        task = self._openers.pop(name, None)
        self.awaiting_streams.pop(name, None)
        if task:
            task.cancel()
        if spec is None:
            return
        for late in (False, True):  # the TAPA before its app; the LB before its frontend (it then withdraws)
            await self.sup.stop_many([p.name for p in spec.processes if (p.component in _STOP_LATE) is late])
        if remove:
            await asyncio.to_thread(self._remove_pod, spec)

    def _remove_pod(self, spec: pods.PodSpec) -> None:
        netnsmod.remove(spec.netns)  # the fast path's tc attachment goes with the namespace's links
        self.store.release(spec.name)
        for mount in bpf.bpffs_under(self.layout.pod_dir(spec.name)):
            bpf.unmount_bpffs(mount)
        shutil.rmtree(self.layout.pod_dir(spec.name), ignore_errors=True)

    def _remove_stray_pods(self) -> None:
        """Namespaces of pods that are not wanted any more (left by a crash mid-change)."""
        wanted = {self.naming.pod_ns(n) for n in self.pods}
        prefix = self.naming.pod_ns("")
        for ns in netnsmod.list_names():
            if ns.startswith(prefix) and ns not in wanted and ns[len(prefix):] not in self.blocked:
                netnsmod.remove(ns)

    def _start_opener(self, spec: pods.PodSpec) -> None:
        dep = next((d for d in self.deployments() if spec.name.startswith(d.name + "-")), None)
        if dep is None or not dep.streams:
            return
        socket = self.builder.tapa_socket(spec.name)
        previous = self._openers.pop(spec.name, None)
        if previous is not None:
            previous.cancel()
        self.awaiting_streams[spec.name] = set(dep.streams)
        self._openers[spec.name] = asyncio.create_task(tasks.guard(
            tapaclient.open_streams(socket, dep.streams, log=self.log.bind(pod=spec.name)), f"open:{spec.name}",
            self.log, expect_end=True))

    # ------------------------------------------------------------------ gateway routers

    def _start_routers(self) -> None:
        for router in self.env.routers:
            path = pathlib.Path(routers.bird_config_path(self.layout, router))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(routers.render(self.env, router, frontends=self._frontends_on(router.network)))
            spec = routers.process_spec(self.layout, self.naming, router)
            if self.sup.get(spec.name) is None:
                self.sup.ensure(spec)

    def _frontends_on(self, network: str) -> list[str]:
        net = self.env.network(network)
        if net is None:
            return []
        return [a for host in self.store.leases(network).values() for a in topology.fe_address(net, host)]

    def _refresh_static_routers(self) -> None:
        for router in (r for r in self.env.routers if r.static is not None):
            text = routers.render(self.env, router, frontends=self._frontends_on(router.network))
            path = pathlib.Path(routers.bird_config_path(self.layout, router))
            if path.read_text() != text:
                path.write_text(text)
                asyncio.create_task(tasks.guard(routers.reconfigure(self.layout, router), f"reconfigure:{router.name}",
                                                self.log, expect_end=True))


_STOP_ORDER = (rc.Kind.TARGET, rc.Kind.FRONTEND_LB, rc.Kind.PROXY, rc.Kind.IPAM, rc.Kind.NSP)
_STOP_LATE = ("frontend", "example-target")


def _parse(text: str, source: str) -> list[resources.Resource]:
    try:
        return resources.loads(text, source)
    except ProblemsError as exc:
        raise ControllerError("\n".join(map(str, exc.problems))) from None


def _verb(old: resources.Resource | None, new: resources.Resource) -> str:
    if old is None:
        return "created"
    return "unchanged" if resources.to_dict(old) == resources.to_dict(new) else "configured"

