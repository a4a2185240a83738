"""Helpers of the e2e suite: Meridio's e2e utilities (test/e2e/utils) re-done against the local runtime.

Everything goes through the ``meridio`` CLI as a user would (``up``, ``apply``, ``delete``, ``scale``,
``target ... --pod``, ``traffic -o json``, ``status -o json``), plus two read-only looks into the
kernel that stand in for Meridio's ``nfqlb show --shm=tshm-<stream>``: the number of distinct
targets in a stream's Maglev map in every LB pod of an attractor (the map is gone once the stream is).
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from meridio.kernel import netns as netnsmod
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming

__all__ = [
    "E2E",
    "E2E_DIR",
    "FAMILIES",
    "OPEN_A",
    "OPEN_B",
    "TARGETS_A",
    "TARGETS_B",
    "VIP1",
    "VIP2",
    "VIP3",
    "TrafficError",
    "wait_baseline",
]

E2E_DIR = envmod.EXAMPLES_E2E
VIP1 = {4: "203.0.113.1", 6: "2001:db8:a1::1"}
VIP2 = {4: "203.0.113.150", 6: "2001:db8:a2::150"}
VIP3 = {4: "203.0.113.40", 6: "2001:db8:a3::1"}
FAMILIES = (4, 6)


class TrafficError(AssertionError):
    pass


def _until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def meridio(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``meridio ARGS`` as a user runs it (this interpreter, output captured, exit code not checked)."""
    return subprocess.run([sys.executable, "-m", "meridio.cli.main", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)


class E2E:
    def __init__(self, env: envmod.Environment) -> None:
        self.env = env
        self.naming = Naming(env.prefix)

    # ------------------------------------------------------------------ the CLI

    def meridio(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = meridio(*args, *(() if args[0] == "up" else ("--env", self.env.name)), timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"meridio {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def status(self) -> dict[str, Any]:
        return json.loads(self.meridio("status", "-o", "json").stdout)  # type: ignore[no-any-return]

    def pids(self) -> dict[str, int | None]:
        """Process name → pid of everything the runtime supervises (a restart changes the pid)."""
        return {p["name"]: p["pid"] for p in self.status()["processes"]}

    def apply(self, name: str) -> None:
        self.meridio("apply", "-f", str(E2E_DIR / name))

    def delete_file(self, name: str) -> None:
        self.meridio("delete", "-f", str(E2E_DIR / name))

    def delete(self, kind: str, name: str, namespace: str = "red") -> None:
        self.meridio("delete", kind, name, "-n", namespace)

    def scale(self, deployment: str, replicas: int) -> None:
        self.meridio("scale", f"deployment/{deployment}", "--replicas", str(replicas))

    def target(self, action: str, pod: str, trench: str, conduit: str, stream: str) -> None:
        self.meridio("target", action, "-t", trench, "-c", conduit, "-s", stream, "--pod", pod)

    # ------------------------------------------------------------------ traffic (mconnect)

    def traffic(self, trench: str, vip: str, port: int, *, udp: bool = False, nconn: int = 400,
                timeout: float = 60, duration: float = 0, rate: float = 10) -> dict[str, Any]:
        """mconnect-like (``timeout`` for the whole run); with ``duration``, ctraffic-like: ``nconn`` long-lived
        connections exchanging ``rate`` messages/s, each message given the CLI's default 2 s."""
        args = ["traffic", "--trench", trench, "--vip", vip, "--port", str(port), "--nconn", str(nconn),
                "-o", "json"] + (["--udp"] if udp else [])
        args += ["--duration", str(duration), "--rate", str(rate)] if duration else ["--timeout", str(timeout)]
        return json.loads(self.meridio(*args, timeout=duration + timeout + 60).stdout)  # type: ignore[no-any-return]

    def expect_traffic(self, trench: str, vip: str, port: int, targets: int, *, udp: bool = False,
                       absent: Iterable[str] = (), settle: float = 60) -> dict[str, Any]:
        """Meridio's "(Traffic) is received by the targets", with lost connections NOT ignored.

        First a small probe until the expected number of targets answer with nothing lost (the
        system settles: announcements, LB maps, VIPs on targets), then the measured 400 connections:
        exactly ``targets`` distinct targets, none of ``absent``, and 0 lost.
        """
        _until(f"{targets} targets answering {vip}:{port} in {trench}",
               lambda: self._probe(trench, vip, port, udp, targets), settle, interval=0.3)
        report = self.traffic(trench, vip, port, udp=udp)
        hosts, lost = report["hosts"], report["lost"]
        if lost != 0:
            raise TrafficError(f"{lost} lost connections to {vip}:{port} ({report['errors']}); hosts {hosts}")
        if len(hosts) != targets:
            raise TrafficError(f"{len(hosts)} targets answered {vip}:{port}, expected {targets}: {hosts}")
        touched = set(absent) & set(hosts)
        if touched:
            raise TrafficError(f"{sorted(touched)} should have received no traffic: {hosts}")
        return report

    def _probe(self, trench: str, vip: str, port: int, udp: bool, targets: int) -> bool:
        r = self.traffic(trench, vip, port, udp=udp, nconn=60, timeout=3)
        return r["lost"] == 0 and len(r["hosts"]) == targets

    def expect_no_traffic(self, trench: str, vip: str, port: int) -> dict[str, Any]:
        """Meridio's flow-byte-matches check: mconnect with a 1 s timeout reaches no target at all."""
        report = self.traffic(trench, vip, port, timeout=1)
        if report["hosts"]:
            raise TrafficError(f"no target should have received traffic to {vip}:{port}: {report['hosts']}")
        return report

    # ------------------------------------------------------------------ TAPA (target-client watch)

    def streams(self, pod: str) -> list[str]:
        """``STATUS - stream - conduit - trench`` lines of the pod's TAPA, sorted."""
        statuses = self.status()["targets"].get(pod) or []
        return sorted(f"{s['status']} - {s['stream']} - {s['conduit']} - {s['trench']}" for s in statuses)

    def wait_streams(self, pod: str, expected: Iterable[str], timeout: float = 120) -> None:
        want = sorted(expected)
        _until(f"{pod} streams {want}", lambda: self.streams(pod) == want or None, timeout)

    # ------------------------------------------------------------------ LB state (nfqlb show)

    def lb_pods(self, attractor: str) -> list[str]:
        return [p["name"] for p in self.status()["pods"] if p["kind"] == "stateless-lb-frontend"
                and p["name"].startswith(f"stateless-lb-frontend-{attractor}-") and p["state"] == "Running"]

    def lb_targets(self, pod: str, stream: str) -> int | None:
        """Distinct targets in ``stream``'s Maglev map in LB ``pod``; None when the map does not exist."""
        from meridio.loadbalancer.nftobjects import TABLE
        from meridio.loadbalancer.ruleset import stream_map_name

        done = netnsmod.run(self.naming.pod_ns(pod), ["nft", "-j", "list", "map", "inet", TABLE,
                                                      stream_map_name(stream)], check=False)
        if done.returncode != 0:
            return None
        for item in json.loads(done.stdout)["nftables"]:
            if "map" in item:
                return len({e[1] for e in item["map"].get("elem", [])})
        return None

    def wait_lb(self, attractor: str, stream: str, targets: int | None, timeout: float = 120) -> None:
        """Every LB pod of ``attractor`` has ``targets`` targets in ``stream`` (None: the stream is gone)."""
        seen: dict[str, int | None] = {}

        def probe() -> bool:
            seen.clear()
            seen.update({p: self.lb_targets(p, stream) for p in self.lb_pods(attractor)})
            return bool(seen) and all(c == targets for c in seen.values())
        try:
            _until(f"{stream} with {targets} targets in every LB of {attractor}", probe, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; LB pods: {seen}") from None

    def wait_ready(self, timeout: float = 120) -> None:
        self.meridio("up", "-f", str(self.env_file), timeout=timeout + 30)

    env_file: pathlib.Path


# ---------------------------------------------------------------------------------------- baseline

TARGETS_A = tuple(f"target-a-{i}" for i in range(4))
TARGETS_B = tuple(f"target-b-{i}" for i in range(4))
OPEN_A = "OPEN - stream-a-i - conduit-a-1 - trench-a"
OPEN_B = "OPEN - stream-b-i - conduit-b-1 - trench-b"


def wait_baseline(e2e: E2E, timeout: float = 120) -> None:
    """The environment as the suite starts: every target with its one stream OPEN, 4 + 4 targets in the LBs."""
    for pod in TARGETS_A:
        e2e.wait_streams(pod, [OPEN_A], timeout)
    for pod in TARGETS_B:
        e2e.wait_streams(pod, [OPEN_B], timeout)
    e2e.wait_lb("attractor-a-1", "stream-a-i", 4, timeout)
    e2e.wait_lb("attractor-b-1", "stream-b-i", 4, timeout)


def daemon_pid(env_name: str) -> int:
    """The pid of environment ``env_name``'s runtime daemon (which must be running)."""
    from meridio.runtime.local.client import daemon_pid as recorded
    from meridio.runtime.local.layout import StateLayout, state_root
    pid = recorded(StateLayout(state_root(env_name)))
    assert pid is not None, f"the runtime daemon of {env_name} is not running"
    return pid


def namespace_pids(prefix: str) -> set[int]:
    """Every process running in a namespace whose name starts with ``prefix``."""
    return netnsmod.pids_in(ns for ns in netnsmod.list_names() if ns.startswith(prefix))


# ---------------------------------------------------------------------------------------- small custom environments

_BFD = {"switch": True, "min-tx": "300ms", "min-rx": "300ms", "multiplier": 3}
BGP_GATEWAY = {"address": "169.254.200.150", "bgp": {"local-asn": 8103, "remote-asn": 4248829953, "hold-time": "24s",
                                                     "local-port": 10179, "remote-port": 10179, "bfd": _BFD}}
BGP_ROUTER = {"bgp": {"hold-time": "24s", "bfd": {"min-rx": "300ms", "min-tx": "300ms", "multiplier": 3}}}
MINI_VIP = "198.51.100.1"


def _obj(kind: str, name: str, spec: dict[str, Any], labels: bool = True,
         api: str = "meridio.nordix.org/v1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "lab", **({"labels": {"trench": "trench-m"}} if labels else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def mini_environment(tmp: pathlib.Path, name: str, prefix: str, *, gateway: dict[str, Any] | None = None,
                     router: dict[str, Any] | None = None) -> pathlib.Path:
    """A one-node environment: trench-m (IPv4), one FE+LB replica, one gateway router, one target ``tm-0``
    serving VIP 198.51.100.1 TCP 4000. ``gateway``/``router`` replace the BGP defaults (e.g. static)."""
    import yaml
    nad = ('{"cniVersion": "0.4.0", "plugins": [{"type": "bridge", "vlan": 300, "ipam": {"type": "whereabouts", '
           '"ipRanges": [{"range": "169.254.200.0/24", "exclude": ["169.254.200.150/32"]}]}}]}')
    objs = [
        _obj("NetworkAttachmentDefinition", "m-nad", {"config": nad}, False, "k8s.cni.cncf.io/v1"),
        _obj("Trench", "trench-m", {"ip-family": "ipv4"}, False),
        _obj("Gateway", "gw-m", gateway or BGP_GATEWAY),
        _obj("Vip", "vip-m", {"address": f"{MINI_VIP}/32"}),
        _obj("Conduit", "conduit-m", {"type": "stateless-lb"}),
        _obj("Stream", "stream-m", {"conduit": "conduit-m"}),
        _obj("Flow", "flow-m", {"stream": "stream-m", "vips": ["vip-m"], "protocols": ["tcp"], "priority": 1,
                                "destination-ports": ["4000"], "source-subnets": ["0.0.0.0/0"]}),
        _obj("Attractor", "attractor-m", {
            "replicas": 1, "composites": ["conduit-m"], "gateways": ["gw-m"], "vips": ["vip-m"],
            "interface": {"name": "ext0", "type": "network-attachment",
                          "network-attachments": [{"name": "m-nad", "namespace": "lab"}]}}),
    ]
    (tmp / "m.yaml").write_text(yaml.safe_dump_all(objs))
    env = {"name": name, "prefix": prefix, "nodes": ["node-1"],
           "networks": [{"name": "seg", "vlan": 300, "ipv4": "169.254.200.0/24"}],
           "routers": [{"name": "gw", "trench": "trench-m", "network": "seg", "ipv4": "169.254.200.150",
                        **(router or BGP_ROUTER), "traffic-generator": {"ipv4": "192.0.2.0/24"}}],
           "deployments": [{"name": "tm", "namespace": "lab", "replicas": 1,
                            "streams": [{"trench": "trench-m", "conduit": "conduit-m", "stream": "stream-m"}]}],
           "resources": ["m.yaml"]}
    (tmp / "env.yaml").write_text(yaml.safe_dump(env))
    return tmp / "env.yaml"
