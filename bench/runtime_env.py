"""What the benches that run a whole environment share (``up_default``, ``up_disruption``, ``up_announce``).

Each bench uses its own environment name and prefix (a copy of the built-in default environment), so it
never touches a user's ``default`` environment.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

import yaml

from meridio.kernel import netns as netnsmod
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.client import daemon_pid
from meridio.runtime.local.layout import StateLayout, state_root

ROOT = pathlib.Path(__file__).resolve().parent.parent


def default_environment(name: str, prefix: str) -> pathlib.Path:
    """The built-in default environment renamed ``name`` with namespace prefix ``prefix``, as a file."""
    data = yaml.safe_load(envmod.DEFAULT_PATH.read_text())
    data.update(name=name, prefix=prefix)
    path = pathlib.Path(tempfile.mkdtemp()) / f"{name}-env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def meridio(env: str, *args: str, timeout: float = 600) -> str:
    """``meridio ARGS`` against environment ``env`` (``up`` takes it from its file); exits on failure."""
    env_args = [] if args[0] == "up" else ["--env", env]
    done = subprocess.run([sys.executable, "-m", "meridio.cli.main", *args, *env_args], check=False,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"meridio {' '.join(args)} failed: {done.stderr.strip() or done.stdout[-500:]}")
    return done.stdout


def runtime_daemon(env: str) -> int | None:
    return daemon_pid(StateLayout(state_root(env)))


def environment_pids(env: str, prefix: str) -> set[int]:
    """Every process in the environment's namespaces, plus its runtime daemon."""
    pids = netnsmod.pids_in(ns for ns in netnsmod.list_names() if ns.startswith(prefix + "-"))
    daemon = runtime_daemon(env)
    return pids | ({daemon} if daemon is not None else set())


def mem_available_kb() -> int:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def memory(pids: set[int]) -> dict[str, float]:
    pss = rss = 0
    for pid in pids:
        try:
            for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return {"processes": len(pids), "pss_mib": round(pss / 1024, 1), "rss_mib": round(rss / 1024, 1)}
