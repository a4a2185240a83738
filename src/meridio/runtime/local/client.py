"""The CLI's side of the runtime daemon: find it, start it, talk to it, or clean up without it.

Synchronous on purpose (the CLI stays small and fast): one unix-socket connection per request, a typed
request of :mod:`meridio.runtime.local.protocol` in, its typed reply out.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from meridio.kernel import bpf
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import protocol as proto
from meridio.runtime.local import scrape, topology
from meridio.runtime.local.layout import Naming, StateLayout, state_root
from meridio.runtime.local.supervisor import log_tail, process_start_time, spawn_detached, stop_leftovers

R = TypeVar("R")

__all__ = [
    "REQUIRED_COMMANDS",
    "MonitoringPorts",
    "monitoring_ports",
    "http_get",
    "pod_metrics",
    "DaemonUnavailable",
    "RequestFailed",
    "daemon_pid",
    "layout_for",
    "load_environment",
    "ping",
    "preflight",
    "request",
    "save_environment",
    "saved_environment",
    "start_daemon",
    "teardown",
]

REQUIRED_COMMANDS = {"ip": "iproute2", "bird": "bird2", "nft": "nftables", "sysctl": "procps"}


class DaemonUnavailable(Exception):
    """No runtime daemon answers for this environment."""


class RequestFailed(Exception):
    """The daemon answered with an error (its message is for the user)."""


def layout_for(env_name: str) -> StateLayout:
    return StateLayout(state_root(env_name))


def save_environment(layout: StateLayout, text: str, base: pathlib.Path) -> None:
    """Keep the environment's definition where the daemon finds it (relative resource paths resolve
    against ``base``)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.environment_file.write_text(text)
    layout.environment_base.write_text(str(base))


def load_environment(layout: StateLayout) -> envmod.Environment:
    """The environment :func:`save_environment` kept."""
    base = pathlib.Path(layout.environment_base.read_text().strip())
    return envmod.loads(layout.environment_file.read_text(), str(layout.environment_file), base_dir=base)


def saved_environment(layout: StateLayout) -> envmod.Environment | None:
    try:
        return load_environment(layout)
    except (OSError, envmod.EnvironmentSpecError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class MonitoringPorts:
    """Where the environment's runtime serves metrics on 127.0.0.1, and its Prometheus (0: none)."""

    port: int
    prometheus: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://127.0.0.1:{self.prometheus}" if self.prometheus else None


def monitoring_ports(layout: StateLayout) -> MonitoringPorts | None:
    """The ports the environment's daemon recorded, or None if it serves no monitoring endpoint."""
    try:
        data = json.loads(layout.monitoring_file.read_text())
        return MonitoringPorts(int(data["port"]), int(data.get("prometheus") or 0)) if data.get("port") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a loopback URL: (status, body); raises OSError when nothing answers."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"only loopback URLs are fetched here, not {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def pod_metrics(layout: StateLayout, pod: str, component: str | None = None) -> str | None:
    """A pod's Prometheus metrics text through the runtime (every component serving metrics when
    ``component`` is None), or None when the runtime or the pod does not answer."""
    ports = monitoring_ports(layout)
    if ports is None:
        return None
    components = [component] if component else list(scrape.METRICS_PORTS)
    texts = []
    for comp in components:
        try:
            status, body = http_get(f"{ports.url}/pods/{pod}/{comp}/metrics")
        except OSError:
            return None
        if status == 200:
            texts.append(body.decode())
    return "".join(texts) if texts else None


def request(layout: StateLayout, req: proto.Request[R], *, progress: Callable[[str], None] | None = None,
            timeout: float | None = None) -> R:
    """Send one request; pass progress lines to ``progress``; return the typed reply or raise."""
    path = str(layout.control_socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonUnavailable(f"no runtime daemon at {path} ({exc.strerror})") from None
    with sock, sock.makefile("rwb") as stream:
        stream.write((json.dumps(proto.encode(req)) + "\n").encode())
        stream.flush()
        for raw in stream:
            msg = json.loads(raw)
            if "progress" in msg:
                if progress is not None:
                    progress(msg["progress"])
                continue
            if msg.get("ok"):
                try:
                    reply: R = proto.decode(req.reply, msg.get("result"))
                except proto.ProtocolError as exc:
                    raise RequestFailed(f"the runtime daemon answered in another form ({exc}): is it another "
                                        f"version? (meridio down, then up)") from None
                return reply
            raise RequestFailed(msg.get("error", "unknown error"))
    raise DaemonUnavailable("the runtime daemon closed the connection without an answer (see its log)")


def ping(layout: StateLayout) -> bool:
    try:
        request(layout, proto.Ping(), timeout=5)
        return True
    except (DaemonUnavailable, OSError, RequestFailed, ValueError):
        return False


def start_daemon(layout: StateLayout, timeout: float = 15.0) -> None:
    """Start the daemon detached (own session, log in the state dir) and wait until it answers."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    proc = spawn_detached([sys.executable, "-m", "meridio.runtime.local.daemon", "--state-dir", str(layout.root)],
                          layout.daemon_log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(layout):
            return
        if proc.poll() is not None:
            why = start_failure(layout.daemon_log)
            raise DaemonUnavailable(f"the runtime daemon exited at start (code {proc.returncode})"
                                    + (f": {why}" if why else "") + f"; see {layout.daemon_log}")
        time.sleep(0.05)
    raise DaemonUnavailable(f"the runtime daemon did not answer within {timeout:.0f}s; see {layout.daemon_log}")


def start_failure(log_path: pathlib.Path) -> str | None:
    """The ``error`` of the last ``runtimeStartFailed`` line of the daemon log (None if there is none)."""
    for _, record in reversed(log_tail(log_path)):
        if record is not None and record.get("message") == "runtimeStartFailed":
            return str(record.get("error", "")) or None
    return None


def preflight() -> str | None:
    """One sentence if this machine cannot run an environment (not root, a command missing)."""
    if os.geteuid() != 0:
        return "the local runtime needs root (network namespaces, nftables, BIRD): run it with sudo"
    missing = [f"{cmd} (Debian package {pkg})" for cmd, pkg in REQUIRED_COMMANDS.items() if shutil.which(cmd) is None]
    if missing:
        return "missing system commands: " + ", ".join(missing) + "; run ./run.sh setup"
    return None


def daemon_pid(layout: StateLayout) -> int | None:
    """The runtime daemon's pid, if the recorded process still runs (same pid and start time)."""
    try:
        pid_text, start_text = layout.daemon_pid.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if str(process_start_time(pid)) == start_text else None


def teardown(layout: StateLayout, prefix: str | None, *, timeout: float = 10.0) -> list[str]:
    """Without a daemon (or after it): stop what is left by pid, remove namespaces and the state dir."""
    pid = daemon_pid(layout)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while daemon_pid(layout) is not None and process_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_start_time(pid) is not None:
            os.kill(pid, signal.SIGKILL)
    stop_leftovers(layout.pids)
    gone: list[str] = []
    if prefix:
        gone = topology.remove_namespaces(Naming(prefix))
    for mount in bpf.bpffs_under(layout.root):  # LB pods' pins (rmtree cannot remove a mount point)
        bpf.unmount_bpffs(mount)
    shutil.rmtree(layout.root, ignore_errors=True)
    return gone


def wait_daemon_exit(layout: StateLayout, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while daemon_pid(layout) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def state_exists(layout: StateLayout) -> bool:
    return pathlib.Path(layout.root).exists()
