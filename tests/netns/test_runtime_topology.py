"""The local runtime's external side on the real kernel: a segment, a BIRD gateway router, a traffic
generator, and a frontend namespace attached to the segment running a real BIRD rendered by the
frontend's renderer. Everything runs in namespaces named after a unique prefix, removed at the end.
"""
from __future__ import annotations

import ipaddress
import pathlib
import subprocess
import uuid

import pytest

from meridio.bird import birdconf
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import routers, topology
from meridio.runtime.local.layout import Naming, StateLayout
from meridio.runtime.local.supervisor import ProcessSpec, Supervisor
from tests.conftest import eventually

pytestmark = pytest.mark.netns

VIP4, VIP6 = "203.0.113.1/32", "2001:db8:a1::1/128"


def _env(prefix: str) -> envmod.Environment:
    return envmod.parse({
        "name": prefix, "prefix": prefix,
        "networks": [{"name": "seg", "ipv4": "169.254.100.0/24", "ipv6": "2001:db8:100::/64"}],
        "routers": [{"name": "gw", "trench": "trench-a", "network": "seg", "ipv4": "169.254.100.150",
                     "ipv6": "2001:db8:100::150",
                     "bgp": {"hold-time": "3s", "bfd": {"min-rx": "100ms", "min-tx": "100ms", "multiplier": 3}},
                     "traffic-generator": {"ipv4": "192.0.2.0/24", "ipv6": "2001:db8:ff::/64"}}],
    })


@pytest.fixture
def world(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    prefix = "t" + uuid.uuid4().hex[:5]
    naming = Naming(prefix)
    try:
        yield _env(prefix), naming, StateLayout(tmp_path / "state")
    finally:
        topology.remove_namespaces(naming)


def _fe_config(tmp: pathlib.Path) -> str:
    cfg = birdconf.BirdConfig(
        interface="ext-vlan0", router_id=ipaddress.IPv4Address("169.254.100.1"), advertise_vips=True,
        vips=(ipaddress.ip_network(VIP4), ipaddress.ip_network(VIP6)), log_file=None,
        gateways=tuple(birdconf.BirdGateway(f"gw{v}", ipaddress.ip_address(a), hold_time_s=3,
                                            bfd=birdconf.Bfd(100, 100, 3))
                       for v, a in (("4", "169.254.100.150"), ("6", "2001:db8:100::150"))))
    path = tmp / "fe.conf"
    path.write_text(birdconf.render(cfg))
    return str(path)


def _routes(ns: str, family: str, dest: str) -> str:
    return netnsmod.run(ns, ["ip", family, "route", "show", *dest.split()], check=False).stdout


def _ping(ns: str, address: str) -> bool:
    return netnsmod.run(ns, ["ping", "-c", "1", "-W", "1", address], check=False).returncode == 0


async def test_the_gateway_router_and_a_frontend_exchange_vips_and_default_routes_over_bgp(
        world, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    env, naming, layout = world
    router = env.router("gw")
    net = env.network("seg")
    topology.ensure_external(env, naming)
    fe_ns = naming.pod_ns("fe-0")
    topology.ensure_namespace(fe_ns, topology.POD_SYSCTLS)
    topology.ensure_link(topology.external_link(naming, net, fe_ns, "ext-vlan0", topology.fe_address(net, 1)))
    layout.router_dir("gw").mkdir(parents=True)
    pathlib.Path(routers.bird_config_path(layout, router)).write_text(routers.render(env, router))
    sup = Supervisor()
    try:
        sup.ensure(routers.process_spec(layout, naming, router))
        sup.ensure(ProcessSpec(pod="fe-0", component="bird", netns=fe_ns, log_path=tmp_path / "fe.log",
                               argv=("bird", "-f", "-c", _fe_config(tmp_path), "-s", str(tmp_path / "fe.ctl"))))
        rns = naming.router_ns("gw")
        await eventually(lambda: "169.254.100.1" in _routes(rns, "-4", "203.0.113.1"), timeout=20)
        await eventually(lambda: "2001:db8:100::1" in _routes(rns, "-6", "2001:db8:a1::1"), timeout=20)
        # the FE learned the default route (its table 4096, for VIP-sourced egress) from the router
        await eventually(lambda: "169.254.100.150" in _routes(fe_ns, "-4", "default table 4096"), timeout=20)
        await eventually(lambda: "2001:db8:100::150" in _routes(fe_ns, "-6", "default table 4096"), timeout=20)
        # the generator reaches the segment through the router
        tg = naming.tg_ns("gw")
        assert _ping(tg, "169.254.100.150") and _ping(tg, "2001:db8:100::150")
    finally:
        await sup.stop_all()


def test_ensuring_the_external_side_twice_changes_nothing_and_repairs_a_missing_link(world) -> None:  # type: ignore[no-untyped-def]
    env, naming, _ = world
    router = env.router("gw")
    topology.ensure_external(env, naming)
    rns, tg = naming.router_ns("gw"), naming.tg_ns("gw")
    spec = topology.LinkSpec(ns=tg, ifname=topology.TG_IF, peer_ns=rns, peer_ifname=topology.ROUTER_TG,
                             addresses=("192.0.2.2/24", "2001:db8:ff::2/64"),
                             peer_addresses=("192.0.2.1/24", "2001:db8:ff::1/64"))
    assert topology.ensure_link(spec) is False
    subprocess.run(["ip", "-n", rns, "link", "del", topology.ROUTER_EXT], check=True)
    topology.ensure_external(env, naming)
    addrs = netnsmod.run(rns, ["ip", "-br", "addr", "show", "dev", topology.ROUTER_EXT]).stdout
    assert str(router.ipv4) in addrs and str(router.ipv6) in addrs
    assert _ping(tg, "169.254.100.150") and _ping(tg, "2001:db8:100::150")


def test_removing_the_environment_deletes_only_its_namespaces(world, netns) -> None:  # type: ignore[no-untyped-def]
    env, naming, _ = world
    bystander = netns("bystander")
    topology.ensure_external(env, naming)
    made = [ns for ns in netnsmod.list_names() if naming.owns(ns)]
    assert sorted(made) == sorted([naming.network_ns("seg"), naming.router_ns("gw"), naming.tg_ns("gw")])
    assert sorted(topology.remove_namespaces(naming)) == sorted(made)
    assert not [ns for ns in netnsmod.list_names() if naming.owns(ns)] and netnsmod.exists(bystander)


def test_a_router_made_again_keeps_its_mac_so_its_peers_neighbour_caches_stay_right(world) -> None:  # type: ignore[no-untyped-def]
    env, naming, _ = world
    topology.ensure_external(env, naming)
    rns = naming.router_ns("gw")
    first = netnsmod.run(rns, ["cat", f"/sys/class/net/{topology.ROUTER_EXT}/address"]).stdout
    netnsmod.remove(rns)
    topology.ensure_external(env, naming)
    assert netnsmod.run(rns, ["cat", f"/sys/class/net/{topology.ROUTER_EXT}/address"]).stdout == first
    assert first.strip() == topology.stable_mac(rns, topology.ROUTER_EXT)
