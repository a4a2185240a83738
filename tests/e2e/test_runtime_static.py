"""A gateway with ``protocol: static`` + BFD (no BGP): the FE routes egress by a BFD-supervised static
default route, the gateway router routes the VIP to the FE by a BFD-supervised static route."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal

from meridio.kernel import netns as netnsmod
from meridio.runtime.reconcile import fe_pod_name
from tests.conftest import wait_for
from tests.e2e.framework import MINI_VIP, meridio, mini_environment, namespace_pids

NAME, PREFIX = "e2estatic", "mstat"
GATEWAY = {"address": "169.254.200.150", "protocol": "static",
           "static": {"bfd": {"switch": True, "min-tx": "300ms", "min-rx": "300ms", "multiplier": 3}}}
ROUTER = {"static": {"vips": [f"{MINI_VIP}/32"], "bfd": {"min-rx": "300ms", "min-tx": "300ms", "multiplier": 3}}}


def _traffic() -> dict[str, object]:
    done = meridio("traffic", "--env", NAME, "--trench", "trench-m", "--vip", MINI_VIP, "--port", "4000", "-o", "json")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _routed_at_router() -> bool:
    return "via" in netnsmod.run(f"{PREFIX}-rtr-gw", ["ip", "-4", "route", "show", f"{MINI_VIP}/32"]).stdout


def _fe_bird() -> int:
    fe_ns = f"{PREFIX}-pod-{fe_pod_name('attractor-m', 0)}"
    return next(p for p in namespace_pids(fe_ns) if pathlib.Path(f"/proc/{p}/comm").read_text().strip() == "bird")


def test_static_bfd_gateways_carry_traffic_and_bfd_takes_the_route_away_from_a_silent_frontend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = mini_environment(tmp_path, NAME, PREFIX, gateway=GATEWAY, router=ROUTER)
    try:
        up = meridio("up", "-f", str(env_file), "--timeout", "120")
        assert up.returncode == 0, up.stderr
        report = _traffic()
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0
        assert _routed_at_router()
        bird = _fe_bird()
        os.kill(bird, signal.SIGSTOP)  # the FE's BFD goes silent: 3 x 300 ms later the router's session is down
        try:
            wait_for(lambda: not _routed_at_router(), 10, message="the router drops the static route to the FE")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(bird, signal.SIGCONT)
        wait_for(_routed_at_router, 30, 0.2, message="the static route back once BFD is up again")
        report = _traffic()
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0
    finally:
        down = meridio("down", "--env", NAME)
    assert down.returncode == 0, down.stderr
