"""The emulated gateway routers' BIRD configuration, from the environment (checked by the real ``bird -p``)."""
from __future__ import annotations

import ipaddress
import pathlib
import shutil
import subprocess

import pytest

from meridio.runtime.local import environment as envmod
from meridio.runtime.local import routers

ENV = envmod.parse({
    "name": "lab",
    "networks": [{"name": "seg", "ipv4": "169.254.100.0/24", "ipv6": "2001:db8:100::/64"},
                 {"name": "six", "ipv6": "2001:db8:200::/64"}],
    "routers": [
        {"name": "gw", "trench": "t", "network": "seg", "ipv4": "169.254.100.150", "ipv6": "2001:db8:100::150",
         "asn": 65001, "bgp": {"peer-asn": 65002, "port": 1790, "hold-time": "9s",
                               "bfd": {"min-rx": "100ms", "min-tx": "200ms", "multiplier": 4}}},
        {"name": "st", "trench": "t", "network": "seg", "ipv4": "169.254.100.151", "ipv6": "2001:db8:100::151",
         "static": {"vips": ["203.0.113.1/32", "2001:db8:a1::1/128"], "bfd": {}}},
        {"name": "v6", "trench": "t", "network": "six", "ipv6": "2001:db8:200::150", "bgp": {}},
    ],
})


def _bird_accepts(text: str, tmp: pathlib.Path) -> None:
    if shutil.which("bird") is None:
        pytest.fail("bird (Debian bird2) is needed to validate the rendering: run ./run.sh setup")
    path = tmp / "bird.conf"
    path.write_text(text)
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_bgp_router_peers_with_any_frontend_of_its_segment_in_both_families(tmp_path: pathlib.Path) -> None:
    cfg = routers.router_config(ENV, ENV.router("gw"))  # type: ignore[arg-type]
    assert [str(r) for r in cfg.peer_ranges] == ["169.254.100.0/24", "2001:db8:100::/64"]
    assert (cfg.asn, cfg.peer_asn, cfg.port, cfg.peer_port, cfg.hold_time_s) == (65001, 65002, 1790, 1790, 9)
    assert cfg.bfd is not None and (cfg.bfd.min_rx_ms, cfg.bfd.min_tx_ms, cfg.bfd.multiplier) == (100, 200, 4)
    assert cfg.announce_default and cfg.ecmp and cfg.router_id == ipaddress.IPv4Address("169.254.100.150")
    _bird_accepts(routers.render(ENV, ENV.router("gw")), tmp_path)  # type: ignore[arg-type]


def test_a_static_router_routes_its_vips_to_every_frontend_of_the_family(tmp_path: pathlib.Path) -> None:
    fes = ["169.254.100.2/24", "2001:db8:100::2/64", "169.254.100.1/24", "2001:db8:100::1/64"]
    cfg = routers.router_config(ENV, ENV.router("st"), frontends=fes)  # type: ignore[arg-type]
    assert {str(r.prefix): [str(h) for h in r.via] for r in cfg.static_routes} == {
        "203.0.113.1/32": ["169.254.100.1", "169.254.100.2"],
        "2001:db8:a1::1/128": ["2001:db8:100::1", "2001:db8:100::2"]}
    assert all(r.bfd for r in cfg.static_routes) and not cfg.peer_ranges and not cfg.announce_default
    _bird_accepts(routers.render(ENV, ENV.router("st"), frontends=fes), tmp_path)  # type: ignore[arg-type]


def test_a_static_router_without_frontends_has_no_route_yet(tmp_path: pathlib.Path) -> None:
    assert routers.router_config(ENV, ENV.router("st")).static_routes == ()  # type: ignore[arg-type]
    _bird_accepts(routers.render(ENV, ENV.router("st")), tmp_path)  # type: ignore[arg-type]


def test_an_ipv6_only_router_gets_a_derived_ipv4_router_id(tmp_path: pathlib.Path) -> None:
    cfg = routers.router_config(ENV, ENV.router("v6"))  # type: ignore[arg-type]
    assert [str(r) for r in cfg.peer_ranges] == ["2001:db8:200::/64"] and cfg.router_id.version == 4
    _bird_accepts(routers.render(ENV, ENV.router("v6")), tmp_path)  # type: ignore[arg-type]


def test_the_router_runs_bird_in_the_foreground_in_its_namespace(tmp_path: pathlib.Path) -> None:
    from meridio.runtime.local.layout import Naming, StateLayout
    spec = routers.process_spec(StateLayout(tmp_path), Naming("lab"), ENV.router("gw"))  # type: ignore[arg-type]
    assert spec.netns == "lab-rtr-gw" and spec.pod == "router-gw" and spec.argv[:2] == ("bird", "-f")
