"""The CLI's side of the runtime daemon: find it, start it, talk to it, or clean up without it.

Synchronous on purpose (the CLI stays small and fast): one unix-socket connection per request, JSON
lines as described in :mod:`meridio.runtime.local.daemon`.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import Naming, StateLayout, state_root
from meridio.runtime.local.supervisor import process_start_time, stop_leftovers

__all__ = [
    "REQUIRED_COMMANDS",
    "DaemonUnavailable",
    "RequestFailed",
    "daemon_pid",
    "layout_for",
    "ping",
    "preflight",
    "request",
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


def saved_environment(layout: StateLayout) -> envmod.Environment | None:
    from meridio.runtime.local.daemon import load_environment
    try:
        return load_environment(layout)
    except (OSError, envmod.EnvironmentSpecError, ValueError):
        return None


def request(layout: StateLayout, message: dict[str, Any], *, progress: Callable[[str], None] | None = None,
            timeout: float | None = None) -> Any:
    """Send one request; print progress lines through ``progress``; return the result or raise."""
    path = str(layout.control_socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonUnavailable(f"no runtime daemon at {path} ({exc.strerror})") from None
    with sock, sock.makefile("rwb") as stream:
        stream.write((json.dumps(message) + "\n").encode())
        stream.flush()
        for raw in stream:
            msg = json.loads(raw)
            if "progress" in msg:
                if progress is not None:
                    progress(msg["progress"])
                continue
            if msg.get("ok"):
                return msg.get("result")
            raise RequestFailed(msg.get("error", "unknown error"))
    raise DaemonUnavailable("the runtime daemon closed the connection without an answer (see its log)")


def ping(layout: StateLayout) -> bool:
    try:
        request(layout, {"op": "ping"}, timeout=5)
        return True
    except (DaemonUnavailable, OSError, RequestFailed, ValueError):
        return False


def start_daemon(layout: StateLayout, timeout: float = 15.0) -> None:
    """Start the daemon detached (own session, log in the state dir) and wait until it answers."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    with open(layout.daemon_log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meridio.runtime.local.daemon", "--state-dir", str(layout.root)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(layout):
            return
        if proc.poll() is not None:
            raise DaemonUnavailable(f"the runtime daemon exited at start (code {proc.returncode}); "
                                    f"see {layout.daemon_log}")
        time.sleep(0.05)
    raise DaemonUnavailable(f"the runtime daemon did not answer within {timeout:.0f}s; see {layout.daemon_log}")


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
        from meridio.runtime.local import topology
        gone = topology.remove_namespaces(Naming(prefix))
    shutil.rmtree(layout.root, ignore_errors=True)
    return gone


def wait_daemon_exit(layout: StateLayout, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while daemon_pid(layout) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def state_exists(layout: StateLayout) -> bool:
    return pathlib.Path(layout.root).exists()
