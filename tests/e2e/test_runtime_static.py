"""A gateway with ``protocol: static`` + BFD (no BGP): the FE routes egress by a BFD-supervised static
default route, the gateway router routes the VIP to the FE by a BFD-supervised static route."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.framework import MINI_VIP, mini_environment

NAME, PREFIX = "e2estatic", "mstat"
GATEWAY = {"address": "169.254.200.150", "protocol": "static",
           "static": {"bfd": {"switch": True, "min-tx": "300ms", "min-rx": "300ms", "multiplier": 3}}}
ROUTER = {"static": {"vips": [f"{MINI_VIP}/32"], "bfd": {"min-rx": "300ms", "min-tx": "300ms", "multiplier": 3}}}


def _meridio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meridio.cli.main", *args], check=False, capture_output=True,
                          text=True, timeout=300)


def test_static_bfd_gateways_carry_traffic_to_the_target(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = mini_environment(tmp_path, NAME, PREFIX, gateway=GATEWAY, router=ROUTER)
    try:
        up = _meridio("up", "-f", str(env_file), "--timeout", "120")
        assert up.returncode == 0, up.stderr
        done = _meridio("traffic", "--env", NAME, "--trench", "trench-m", "--vip", MINI_VIP, "--port", "4000",
                        "-o", "json")
        report = json.loads(done.stdout)
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0
    finally:
        down = _meridio("down", "--env", NAME)
    assert down.returncode == 0, down.stderr
