"""Cross-node LB links in the proxy's state logic: a replica on another node gets a VXLAN tunnel whose
LB end is asked for over ConduitLink; one on this node keeps its veth.

Fakes: the kernel (:class:`TunnelDataplane`, the in-memory dataplane of ``test_proxy_forwarder`` plus
tunnels) and the replicas' ConduitLink services (:class:`FakeLbLinks`). The real ones run in
``tests/netns/test_conduit_vxlan.py``.
"""
from __future__ import annotations

from typing import Any

from meridio.api import conduitlinkclient, model
from meridio.kernel import netlink
from meridio.proxy import deadlines, names, plan
from meridio.proxy.context import Config, Context
from meridio.proxy.forwarder import Forwarder
from tests.unit.test_proxy_forwarder import CONDUIT, HOME, FakeDataplane, FakeIpam, Iface

POD_IPS = ("10.244.2.5", "fd00:10:244:2::5")


class TunnelDataplane(FakeDataplane):
    """FAKE kernel with VXLAN ports: a VNI is unique among this namespace's tunnels."""

    def __init__(self) -> None:
        super().__init__()
        self.tunnels: dict[str, netlink.VxlanInfo] = {}
        self.taken_vnis: set[int] = set()

    async def create_tunnel(self, *, port: str, port_alias: str, vni: int, local: str, remote: str) -> None:
        from meridio.proxy import dataplane
        if vni in self.taken_vnis | {t.vni for n, t in self.tunnels.items() if n != port}:
            raise dataplane.NameTaken(f"vni {vni} is used by another tunnel in the proxy's namespace")
        self.ns[HOME][port] = Iface(next(self._index), port_alias, None, master="bridge0")
        self.tunnels[port] = netlink.VxlanInfo(vni, local, remote, netlink.VXLAN_PORT, "02:00:00:00:00:01", 1500)
        self.created.append(port)

    async def tunnel(self, port: str) -> netlink.VxlanInfo | None:
        return self.tunnels.get(port) if port in self.ns[HOME] else None

    async def delete_port(self, name: str) -> bool:
        self.tunnels.pop(name, None)
        return await super().delete_port(name)


class FakeLbLinks:
    """FAKE ConduitLink services of the replicas, by host: records the calls, refuses VNIs in ``taken``."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int, conduitlinkclient.ConnectArgs]] = []
        self.disconnects: list[tuple[str, str]] = []
        self.taken: set[int] = set()

    async def connect(self, host: str, port: int, args: conduitlinkclient.ConnectArgs) -> conduitlinkclient.Reply:
        self.connects.append((host, port, args))
        if args.vni in self.taken:
            raise conduitlinkclient.VniTaken(f"vni {args.vni} in use")
        return conduitlinkclient.Reply("cond-a-1a2b", host)

    async def disconnect(self, host: str, port: int, *, trench: str, conduit: str, node: str) -> None:
        self.disconnects.append((host, node))


def lb_target(ident: str, node: str, address: str = "10.244.1.4,fd00:10:244:1::4",
              netns_id: str = "4026532001") -> model.Target:
    return model.Target.make(type=model.TargetType.LOADBALANCER, stream=model.Stream("", CONDUIT), context={
        "identifier": ident, "netns": ident, "ifprefix": "cond-a", "node": node, "address": address,
        "link-port": "7779", "netns-id": netns_id})


class Bed:
    def __init__(self, **config: Any) -> None:
        self.dp, self.ipam, self.links = TunnelDataplane(), FakeIpam(), FakeLbLinks()
        cfg = Config("trench-a", "conduit-a-1", "node-2", pod_ips=POD_IPS, **config)
        self.fwd = Forwarder(Context(cfg, self.dp, self.ipam, deadlines.Deadlines(20.0),  # type: ignore[arg-type]
                                     lambda: 0.0, lb_links=self.links))


async def _started() -> Bed:
    bed = Bed()
    await bed.fwd.start()
    return bed


async def test_a_replica_on_another_node_gets_a_tunnel_whose_lb_end_it_asks_for() -> None:
    bed = await _started()
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    link = bed.fwd.lb.links["lb-1"]
    vni = names.vni(trench="trench-a", conduit="conduit-a-1", node="node-2", identifier="lb-1")
    assert bed.dp.tunnels[link.port] == netlink.VxlanInfo(vni, "10.244.2.5", "10.244.1.4", 4789, "02:00:00:00:00:01",
                                                           1500)
    assert bed.dp.ns[HOME][link.port].master == "bridge0"
    [(host, port, args)] = bed.links.connects
    assert (host, port) == ("10.244.1.4", 7779)
    assert args == conduitlinkclient.ConnectArgs("trench-a", "conduit-a-1", "node-2", vni, "10.244.2.5",
                                                 link.addresses, 1500)
    assert link.far_name == "cond-a-1a2b" and link.tunnel == (("10.244.2.5", "10.244.1.4"), vni)
    assert bed.fwd.lb.addresses() == list(link.addresses)  # the LB end is an egress next hop, as over a veth


async def test_a_replica_on_the_same_node_keeps_its_veth() -> None:
    bed = await _started()
    bed.dp.ns["/run/netns/lb-2"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-2", "node-2")])
    assert bed.links.connects == [] and bed.dp.tunnels == {}
    assert bed.fwd.lb.links["lb-2"].tunnel is None and bed.dp.ns["/run/netns/lb-2"]


async def test_a_vni_taken_on_either_side_moves_both_ends_to_the_next_candidate() -> None:
    bed = await _started()
    first, second, third = (names.vni(trench="trench-a", conduit="conduit-a-1", node="node-2", identifier="lb-1",
                                      attempt=a) for a in range(3))
    bed.dp.taken_vnis.add(first)      # another tunnel of the proxy's namespace
    bed.links.taken.add(second)      # another tunnel of the LB's namespace
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    assert [a.vni for _, _, a in bed.links.connects] == [second, third]
    assert bed.fwd.lb.links["lb-1"].tunnel == (("10.244.2.5", "10.244.1.4"), third)
    assert [t.vni for t in bed.dp.tunnels.values()] == [third]


async def test_a_replica_that_leaves_has_its_tunnel_and_its_lb_end_removed() -> None:
    bed = await _started()
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    await bed.fwd.set_lb_targets([])
    assert bed.dp.tunnels == {} and bed.links.disconnects == [("10.244.1.4", "node-2")]


async def test_an_ipv6_only_replica_is_reached_over_ipv6() -> None:
    bed = await _started()
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1", address="fd00:10:244:1::4")])
    [tunnel] = bed.dp.tunnels.values()
    assert (tunnel.local, tunnel.remote) == ("fd00:10:244:2::5", "fd00:10:244:1::4")


async def test_a_restarted_proxy_adopts_its_tunnel_and_asks_for_the_lb_end_again() -> None:
    bed = await _started()
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    port = bed.fwd.lb.links["lb-1"].port
    again = Bed()
    again.dp, again.links = bed.dp, FakeLbLinks()
    again.fwd = Forwarder(Context(Config("trench-a", "conduit-a-1", "node-2", pod_ips=POD_IPS), bed.dp,  # type: ignore[arg-type]
                                  bed.ipam, deadlines.Deadlines(20.0), lambda: 0.0, lb_links=again.links))  # type: ignore[arg-type]
    await again.fwd.start()
    await again.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    assert bed.dp.created.count(port) == 1, "the tunnel was kept, not made again"
    assert [a.vni for _, _, a in again.links.connects] == [bed.dp.tunnels[port].vni]


def test_a_bad_cross_node_context_is_a_problem_naming_the_key() -> None:
    bad = lb_target("lb-1", "node-1", address="not-an-ip")
    peers, problems = plan.lb_peers([bad], trench="trench-a", conduit="conduit-a-1")
    assert peers == {} and "context.address" in problems[0].error


def test_the_vni_is_stable_in_range_and_differs_per_attempt_and_end() -> None:
    kw = {"trench": "trench-a", "conduit": "conduit-a-1", "node": "node-2", "identifier": "lb-1"}
    assert names.vni(**kw) == names.vni(**kw)
    values = {names.vni(**kw, attempt=a) for a in range(16)} | {names.vni(**{**kw, "node": "node-1"})}
    assert len(values) == 17 and all(1 <= v <= 2**24 - 1 for v in values)


async def test_a_replica_whose_namespace_was_made_again_gets_its_tunnel_made_again() -> None:
    bed = await _started()
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1")])  # a refresh changes nothing
    assert len(bed.links.connects) == 1
    await bed.fwd.set_lb_targets([lb_target("lb-1", "node-1", netns_id="4026532999")])
    assert len(bed.links.connects) == 2 and bed.fwd.lb.links["lb-1"].peer.netns_id == "4026532999"
