"""``meridio up -f`` with a custom environment, and ``meridio down`` on a broken one (daemon killed,
namespaces missing): every namespace, process and file goes."""
from __future__ import annotations

import os
import signal
import subprocess

import yaml

from meridio.common import procfs
from meridio.kernel import netns as netnsmod
from meridio.runtime.local.layout import state_root
from tests.e2e.framework import daemon_pid, meridio, mini_environment, namespace_pids

NAME, PREFIX = "e2edown", "mdown"


def test_a_custom_environment_serves_traffic_and_down_removes_it_all_even_when_broken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = mini_environment(tmp_path, NAME, PREFIX)
    try:
        up = meridio("up", "-f", str(env_file), "--timeout", "120")
        assert up.returncode == 0, up.stderr
        done = meridio("traffic", "--env", NAME, "--trench", "trench-m", "--vip", "198.51.100.1", "--port", "4000",
                       "-o", "json")
        report = yaml.safe_load(done.stdout)
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0
        pids = namespace_pids(f"{PREFIX}-")
        assert len(pids) >= 8  # nsp, ipam, lb, frontend + its bird, proxy, example target, tapa, router bird
        daemon = daemon_pid(NAME)
        os.kill(daemon, signal.SIGKILL)  # broken: no daemon, and a namespace gone under its processes
        subprocess.run(["ip", "netns", "del", f"{PREFIX}-rtr-gw"], check=True)
    finally:
        down = meridio("down", "--env", NAME)
    assert down.returncode == 0, down.stderr
    assert not [ns for ns in netnsmod.list_names() if ns.startswith(f"{PREFIX}-")]
    assert not [p for p in pids | {daemon} if procfs.running(p)]
    assert not state_root(NAME).exists()
