"""The LB's end of cross-node conduit links (pure parts and :class:`Links` over a FAKE kernel): request
checks naming the field, who may ask, names/MACs, idempotent Connect, Disconnect by alias."""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import grpc
import grpc.aio
import pytest

from meridio.api.pb.meridio.loadbalancer.v1 import conduitlink_pb2, conduitlink_pb2_grpc
from meridio.common import grpcutil
from meridio.common import identity as idm
from meridio.kernel import netlink
from meridio.loadbalancer import conduitlink

GOOD = {"trench": "trench-a", "conduit": "conduit-a-1", "node": "node-2", "vni": 4242, "remote": "10.244.2.5",
        "addresses": ["172.16.2.3/24", "fd00:0:0:2::3/64"], "mtu": 1500}


def _req(**change: object) -> conduitlink_pb2.ConnectRequest:
    return conduitlink_pb2.ConnectRequest(**{**GOOD, **change})  # type: ignore[arg-type]


def test_a_good_request_is_parsed() -> None:
    req = conduitlink.request_from_pb(_req(mtu=0), trench="trench-a", conduit="conduit-a-1")
    assert req == conduitlink.LinkRequest("node-2", 4242, "10.244.2.5", ("172.16.2.3/24", "fd00:0:0:2::3/64"), 1500)


@pytest.mark.parametrize(("change", "message"), [
    ({"trench": "trench-b"}, "trench: 'trench-b' is not this LB's trench 'trench-a'"),
    ({"conduit": "c"}, "conduit: 'c' is not this LB's conduit 'conduit-a-1'"),
    ({"node": "Node_2"}, "node: 'Node_2' is not a node name"),
    ({"vni": 0}, "vni: 0 must be between 1 and 16777215"),
    ({"vni": 2**24}, "vni: 16777216 must be between 1 and 16777215"),
    ({"remote": "10.244.2"}, "remote: '10.244.2' is not an IP address"),
    ({"addresses": ["172.16.2.3"] + ["x"]}, "addresses[1]: 'x' is not address/prefix-length"),
    ({"addresses": []}, "addresses: at least one address is needed"),
    ({"mtu": 1000}, "mtu: 1000 must be between 1280 and 65535"),
], ids=["trench", "conduit", "node", "vni-zero", "vni-big", "remote", "address", "no-address", "mtu"])
def test_a_bad_request_is_refused_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(grpcutil.InvalidArgument) as err:
        conduitlink.request_from_pb(_req(**change), trench="trench-a", conduit="conduit-a-1")
    assert str(err.value).startswith(message)


def _who(component: idm.Component, trench: str | None = "trench-a", node: str | None = "node-2") -> idm.Identity:
    return idm.Identity(cluster="c", component=component, pod="p", trench=trench, node=node)


@pytest.mark.parametrize(("caller", "message"), [
    (_who(idm.Component.TAPA), "tapa p may not make conduit links (only a proxy)"),
    (_who(idm.Component.PROXY, trench="trench-b"), "proxy p belongs to trench 'trench-b', this LB to 'trench-a'"),
    (_who(idm.Component.PROXY, node="node-3"), "node: 'node-2' is not the node of proxy p ('node-3')"),
], ids=["not-a-proxy", "other-trench", "other-node"])
def test_only_a_proxy_of_the_trench_may_ask_and_only_for_its_own_node(caller: idm.Identity, message: str) -> None:
    with pytest.raises(grpcutil.PermissionDenied, match=message.replace("(", r"\(").replace(")", r"\)")):
        conduitlink.authorize(caller, trench="trench-a", node="node-2")
    conduitlink.authorize(_who(idm.Component.PROXY), trench="trench-a", node="node-2")


def test_names_fit_ifnamsiz_and_macs_are_stable_locally_administered_unicast() -> None:
    name = conduitlink.end_name("conduit-a-1-long", trench="t", conduit="c", node="node-2")
    assert len(name) <= 15 and name.startswith("conduit-a--")
    mac = conduitlink.end_mac("lb-1", trench="t", conduit="c", node="node-2")
    assert mac == conduitlink.end_mac("lb-1", trench="t", conduit="c", node="node-2")
    assert int(mac[:2], 16) & 0x03 == 0x02


class FakeKernel:
    """FAKE namespace: interfaces by name (VXLAN parameters, alias, addresses)."""

    def __init__(self) -> None:
        self.links: dict[str, tuple[netlink.VxlanInfo, str, tuple[str, ...]]] = {}
        self.created = 0
        self.main_routed: set[str] = set()

    def vxlan_info(self, name: str) -> netlink.VxlanInfo | None:
        return self.links[name][0] if name in self.links else None

    def create(self, name: str, *, vni: int, local: str, remote: str, mac: str, mtu: int, alias: str) -> None:
        if any(info.vni == vni for info, _, _ in self.links.values()):
            raise conduitlink.VniTaken(f"vni {vni} is used")
        self.links[name] = (netlink.VxlanInfo(vni, local, remote, 4789, mac, mtu), alias, ())
        self.created += 1

    def route_to_main(self, remote: str, *, keep: bool) -> None:
        (self.main_routed.add if keep else self.main_routed.discard)(remote)

    def configure(self, name: str, addresses: Sequence[str]) -> None:
        info, alias, _ = self.links[name]
        self.links[name] = (info, alias, tuple(addresses))

    def delete(self, name: str) -> None:
        self.links.pop(name, None)

    def find_alias(self, alias: str) -> list[str]:
        return [n for n, (_, a, _) in self.links.items() if a == alias]


def _links(kernel: FakeKernel) -> conduitlink.Links:
    return conduitlink.Links(kernel, identifier="lb-1", trench="trench-a", conduit="conduit-a-1", ifprefix="cond-a",
                             local=("10.244.1.4", "fd00:10:244:1::4"))


async def test_connect_makes_the_end_once_and_repeating_it_keeps_it() -> None:
    kernel = FakeKernel()
    links = _links(kernel)
    req = conduitlink.request_from_pb(_req(), trench="trench-a", conduit="conduit-a-1")
    name, local = await links.connect(req)
    assert (name, local) == (conduitlink.end_name("cond-a", trench="trench-a", conduit="conduit-a-1",
                                                  node="node-2"), "10.244.1.4")
    assert await links.connect(req) == (name, local) and kernel.created == 1
    info, alias, addresses = kernel.links[name]
    assert (info.vni, info.local, info.remote, alias) == (4242, "10.244.1.4", "10.244.2.5",
                                                          "conduit-link trench-a/conduit-a-1/node-2")
    assert addresses == req.addresses
    assert kernel.main_routed == {"10.244.2.5"}, "the tunnel's own packets are routed by the main table"
    moved = conduitlink.request_from_pb(_req(vni=4343), trench="trench-a", conduit="conduit-a-1")
    await links.connect(moved)
    assert kernel.created == 2 and kernel.links[name][0].vni == 4343
    assert await links.disconnect("node-2") and kernel.links == {} and kernel.main_routed == set()
    assert not await links.disconnect("node-2")


async def test_a_vni_used_by_another_tunnel_here_is_refused() -> None:
    kernel = FakeKernel()
    links = _links(kernel)
    await links.connect(conduitlink.request_from_pb(_req(), trench="trench-a", conduit="conduit-a-1"))
    with pytest.raises(conduitlink.VniTaken):
        await links.connect(conduitlink.request_from_pb(_req(node="node-3"), trench="trench-a", conduit="conduit-a-1"))


async def test_a_remote_of_a_family_this_pod_lacks_is_a_failed_precondition() -> None:
    links = conduitlink.Links(FakeKernel(), identifier="lb-1", trench="trench-a", conduit="conduit-a-1",
                              ifprefix="cond-a", local=("10.244.1.4",))
    req = conduitlink.request_from_pb(_req(remote="fd00:10:244:2::5"), trench="trench-a", conduit="conduit-a-1")
    with pytest.raises(grpcutil.FailedPrecondition, match="no IPv6 pod address"):
        await links.connect(req)


async def _serve_and_connect(tmp_path: pathlib.Path, *, check_identity: bool) -> tuple[str, FakeKernel]:
    """The servicer on an in-process gRPC server (plain, unix socket) and one Connect through the client."""
    kernel = FakeKernel()
    server = grpcutil.create_server()
    conduitlink_pb2_grpc.add_ConduitLinkServicer_to_server(
        conduitlink.Servicer(_links(kernel), check_identity=check_identity), server)
    grpcutil.add_listener(server, f"unix:{tmp_path}/cl.sock")
    await server.start()
    try:
        async with grpcutil.insecure_channel(f"unix:{tmp_path}/cl.sock") as ch:
            try:
                reply = await conduitlink_pb2_grpc.ConduitLinkStub(ch).Connect(_req(), timeout=5)
                return f"OK {reply.interface_name} {reply.local}", kernel
            except grpc.aio.AioRpcError as exc:
                return exc.code().name, kernel
    finally:
        await server.stop(None)


async def test_a_caller_without_a_verified_identity_is_refused_and_nothing_is_made(tmp_path: pathlib.Path) -> None:
    answer, kernel = await _serve_and_connect(tmp_path, check_identity=True)
    assert answer == "UNAUTHENTICATED" and kernel.links == {}


async def test_in_insecure_mode_there_is_no_identity_to_check(tmp_path: pathlib.Path) -> None:
    answer, kernel = await _serve_and_connect(tmp_path, check_identity=False)
    name = conduitlink.end_name("cond-a", trench="trench-a", conduit="conduit-a-1", node="node-2")
    assert answer == f"OK {name} 10.244.1.4" and list(kernel.links) == [name]
