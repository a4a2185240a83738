"""``ipam.v1.Ipam`` RPCs through a real in-process grpc.aio client/server pair on a unix socket.

Real: grpc.aio, the registry, sqlite (in memory). Fake: the clock. No network (unix socket in tmp_path).
"""
from __future__ import annotations

import asyncio
import ipaddress
import pathlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meridio.api.pb.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from meridio.api.pb.nsp.v1 import model_pb2
from meridio.common.clock import FakeClock
from meridio.ipam import servicer as servicermod
from meridio.ipam import store as storemod
from meridio.ipam import tree
from meridio.ipam.registry import Registry


@pytest.fixture
def node_length() -> int:
    return 24


async def serve(registry: Registry, tmp_path: pathlib.Path) -> tuple[grpc.aio.Server, str]:
    """The IPAM servicer over ``registry`` (conduit-a configured) on a unix socket in ``tmp_path``, started."""
    registry.set_conduits(["conduit-a"])
    server = grpc.aio.server()
    ipam_pb2_grpc.add_IpamServicer_to_server(servicermod.IpamServicer(registry), server)
    address = f"unix:{tmp_path}/ipam.sock"
    server.add_insecure_port(address)
    await server.start()
    return server, address


@pytest.fixture
async def pair(tmp_path: pathlib.Path, node_length: int) -> AsyncIterator[tuple[Registry, ipam_pb2_grpc.IpamStub]]:
    layouts = [tree.Layout(tree.Family.IPV4, ipaddress.ip_network("172.16.0.0/16"), 20, node_length)]
    registry = Registry(storemod.Store.open(":memory:"), trench="trench-a", layouts=layouts, clock=FakeClock())
    server, address = await serve(registry, tmp_path)
    channel = grpc.aio.insecure_channel(address)
    try:
        yield registry, ipam_pb2_grpc.IpamStub(channel)
    finally:
        await channel.close()
        await server.stop(None)
        registry.close()


def child(name: str = "bridge", *, conduit: str | None = "conduit-a", trench: str | None = "trench-a",
          node: str = "node-1", family: int = 0) -> ipam_pb2.Child:
    m = ipam_pb2.Child(name=name, subnet=ipam_pb2.Subnet(node=node, ipFamily=family))  # type: ignore[arg-type]
    if conduit is not None:
        m.subnet.conduit.CopyFrom(model_pb2.Conduit(name=conduit))
        if trench is not None:
            m.subnet.conduit.trench.CopyFrom(model_pb2.Trench(name=trench))
    return m


async def test_allocate_returns_the_address_with_the_node_prefix_length(pair) -> None:  # type: ignore[no-untyped-def]
    _, stub = pair
    reply = await stub.Allocate(child("bridge"), timeout=5)
    assert (reply.address, reply.prefixLength) == ("172.16.0.1", 24)
    again = await stub.Allocate(child("bridge"), timeout=5)
    assert (again.address, again.prefixLength) == ("172.16.0.1", 24)


async def test_release_frees_the_address_and_unknown_release_is_ok(pair) -> None:  # type: ignore[no-untyped-def]
    _, stub = pair
    await stub.Allocate(child("a"), timeout=5)
    await stub.Allocate(child("b"), timeout=5)
    await stub.Release(child("a"), timeout=5)
    await stub.Release(child("never-allocated", node="no-node", conduit="no-conduit"), timeout=5)
    assert (await stub.Allocate(child("c"), timeout=5)).address == "172.16.0.1"


BAD_REQUESTS = [
    (ipam_pb2.Child(name="x"), "subnet cannot be nil"),
    (child(conduit=None), "conduit cannot be nil"),
    (child(trench=None), "trench cannot be nil"),
    (child(""), "child.name cannot be empty"),
    (child(conduit=""), "child.subnet.conduit.name cannot be empty"),
    (child(node=""), "child.subnet.node cannot be empty"),
    (child(trench=""), "child.subnet.conduit.trench.name cannot be empty"),
    (child(family=1), "cannot allocate in this ip family"),
    (child(family=9), "cannot allocate in this ip family"),
    (child(trench="trench-b"), "no corresponding trench"),
]
BAD_IDS = ["no-subnet", "no-conduit", "no-trench", "empty-name", "empty-conduit", "empty-node", "empty-trench",
           "family-not-served", "unknown-family", "other-trench"]


@pytest.mark.parametrize("request_,message", BAD_REQUESTS, ids=BAD_IDS)
async def test_bad_allocate_is_invalid_argument_and_changes_nothing(pair, request_: ipam_pb2.Child,  # type: ignore[no-untyped-def]
                                                                    message: str) -> None:
    registry, stub = pair
    before = registry.entries()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Allocate(request_, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    assert registry.entries() == before


@pytest.mark.parametrize("request_,message", BAD_REQUESTS, ids=BAD_IDS)
async def test_bad_release_is_invalid_argument(pair, request_: ipam_pb2.Child, message: str) -> None:  # type: ignore[no-untyped-def]
    _, stub = pair
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Release(request_, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")


@pytest.mark.parametrize("node_length", [30])  # /30 nodes: two usable addresses
async def test_exhausted_node_is_resource_exhausted(pair) -> None:  # type: ignore[no-untyped-def]
    _, stub = pair
    await stub.Allocate(child("a"), timeout=5)
    await stub.Allocate(child("b"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Allocate(child("c"), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (info.value.details() or "").startswith("no more prefix available")


async def test_allocate_in_an_unannounced_conduit_waits_for_it(pair) -> None:  # type: ignore[no-untyped-def]
    registry, stub = pair
    call = asyncio.ensure_future(stub.Allocate(child(conduit="conduit-b"), timeout=5))
    await asyncio.sleep(0.2)
    assert not call.done()
    registry.set_conduits(["conduit-a", "conduit-b"])
    assert (await call).address == "172.16.16.1"


async def test_allocate_in_an_unannounced_conduit_fails_at_the_deadline(pair) -> None:  # type: ignore[no-untyped-def]
    _, stub = pair
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Allocate(child(conduit="conduit-b"), timeout=0.3)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_made_up_nodes_get_nothing_and_the_real_node_2_still_gets_its_prefix(tmp_path: pathlib.Path) -> None:
    # The attack: 15 made-up node names used up the conduit's /20 (16 node /24s), node-2 was refused.
    layouts = [tree.Layout(tree.Family.IPV4, ipaddress.ip_network("172.16.0.0/16"), 20, 24)]
    registry = Registry(storemod.Store.open(":memory:"), trench="trench-a", layouts=layouts, clock=FakeClock(),
                        nodes=["node-1", "node-2"])
    server, address = await serve(registry, tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ipam_pb2_grpc.IpamStub(channel)
            for i in range(16):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Allocate(child(node=f"evil-{i}"), timeout=5)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.value.details() == ("child.subnet.node: node 'evil-15' is not one of the nodes of this IPAM "
                                           "(IPAM_NODES)")
            got = await stub.Allocate(child(node="node-2"), timeout=5)
    finally:
        await server.stop(None)
    assert got.prefixLength == 24
    assert [e.path[-1] for e in registry.entries() if len(e.path) == tree.Level.NODE] == ["node-2"]


@pytest.mark.parametrize("request_, field", [
    pytest.param(child(node="n" * 1_000_000), "child.subnet.node: at most 253 characters", id="1 MB node"),
    pytest.param(child(node="Node_1"), "child.subnet.node: 'Node_1' is not a valid name", id="node not a name"),
    pytest.param(child(conduit="c" * 300), "child.subnet.conduit.name: at most 253", id="long conduit"),
    pytest.param(child(name="x" * 254), "child.name: at most 253 characters", id="long child"),
    pytest.param(child(name="a\nb"), "child.name: 'a\\nb' must be printable", id="child with a newline"),
])
async def test_oversized_or_malformed_names_are_invalid_with_a_short_message(pair, request_, field) -> None:  # type: ignore[no-untyped-def]
    registry, stub = pair
    before = registry.entries()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field) and len(err.value.details() or "") < 200
    assert registry.entries() == before
