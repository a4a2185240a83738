"""The issue's attacks on the NSP, over the wire: each one is refused and changes nothing.

What is real: grpc.aio server (``grpcutil.create_server``: message size, deadline, decoding) and
clients, the NSP servicers, the registry and ConfigurationManager cores. Nothing is faked; the
configuration is set in memory instead of read from a file.
"""
from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import empty_pb2

from meridio.api import model as m
from meridio.api.pb.nsp.v1 import model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from meridio.common import grpcutil
from meridio.common.clock import SystemClock
from meridio.nsp import config, registry, service, targets, watchers

TA = m.Trench("trench-a")
C1 = m.Conduit("conduit-a-1", TA)
S1 = m.Stream("stream-a-i", C1, 100)
CONFIG = m.Configuration(TA, (C1,), (S1,))
Served = tuple[str, config.ConfigurationManager, targets.Targets]


def stream_pb(trench: str = "trench-a", conduit: str = "conduit-a-1", stream: str = "stream-a-i") -> model_pb2.Stream:
    return model_pb2.Stream(name=stream, conduit=model_pb2.Conduit(name=conduit, trench=model_pb2.Trench(name=trench)))


def target_pb(ip: str, ident: str, **kw: object) -> targetregistry_pb2.Target:
    return targetregistry_pb2.Target(ips=[ip], context={"identifier": ident}, stream=kw.pop("stream", stream_pb()),
                                     **kw)  # type: ignore[arg-type]


async def serve(tmp_path: pathlib.Path, quota: watchers.Quota | None = None, tcp: bool = False
                ) -> tuple[grpc.aio.Server, Served]:
    manager = config.ConfigurationManager(CONFIG)
    owner = targets.Targets(registry.Registry(clock=SystemClock()), None)
    server = grpcutil.create_server()
    service.add_to_server(server, manager, owner, quota=quota)
    if tcp:
        address = f"127.0.0.1:{grpcutil.add_listener(server, '127.0.0.1:0')}"
    else:
        address = f"unix://{tmp_path}/nsp.sock"
        grpcutil.add_listener(server, address)
    await server.start()
    return server, (address, manager, owner)


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[Served]:
    server, parts = await serve(tmp_path)
    try:
        yield parts
    finally:
        parts[1].close()
        parts[2].close()
        await server.stop(0.5)


async def refused_watch(call: grpc.aio.UnaryStreamCall) -> tuple[grpc.StatusCode, str]:
    """The status of a watch that must end without a first message."""
    try:
        got = await call.read()
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    assert got is grpc.aio.EOF, f"the watch got a message: {got}"
    return await call.code(), await call.details()


async def rejected(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def test_a_registration_for_a_made_up_trench_is_refused_and_the_real_targets_stay(served: Served) -> None:
    address, _, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        for i in range(1, 5):
            await stub.Register(target_pb(f"172.16.1.{i}/24", str(i)), timeout=5)
        err = await rejected(stub.Register(target_pb("10.66.6.6/32", "1", stream=stream_pb(trench="evil")), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == ("target.stream.conduit.trench.name: 'evil' is not the trench of this NSP "
                             "('trench-a')")
    assert sorted(t.ips[0] for t in owner.targets()) == [f"172.16.1.{i}/24" for i in range(1, 5)]


async def test_a_registration_for_an_unconfigured_stream_is_a_failed_precondition(served: Served) -> None:
    address, manager, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        err = await rejected(stub.Register(target_pb("172.16.1.1/24", "1", stream=stream_pb(stream="new")),
                                           timeout=5))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert owner.targets() == ()
        # ... and succeeds once the stream is configured (the caller retried).
        manager.update(m.Configuration(TA, (C1,), (S1, m.Stream("new", C1, 100))))
        await stub.Register(target_pb("172.16.1.1/24", "1", stream=stream_pb(stream="new")), timeout=5)
    assert len(owner.targets()) == 1


@pytest.mark.parametrize("request_, field", [
    pytest.param(targetregistry_pb2.Target(ips=[f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(5000)],
                                           context={"identifier": "1"}, stream=stream_pb()),
                 "target.ips: at most 32 entries", id="5000 ips"),
    pytest.param(target_pb("not-an-ip", "1"), "target.ips[0]: 'not-an-ip' is not an IP address", id="not-an-ip"),
    pytest.param(target_pb("172.16.1.1/24", "x" * 60_000), "target.context['identifier']: at most 256 characters",
                 id="60 kB identifier"),
    pytest.param(target_pb("172.16.1.1/24", "1", stream=stream_pb(stream="s" * 60_000)),
                 "target.stream.name: at most 253 characters", id="60 kB stream name"),
])
async def test_oversized_or_malformed_targets_are_invalid_with_a_short_message_and_nothing_is_stored(
        served: Served, request_: targetregistry_pb2.Target, field: str) -> None:
    address, _, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        err = await rejected(stub.Register(request_, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(field) and len(err.details() or "") < 200
    assert owner.targets() == ()


async def test_a_message_larger_than_64_kib_is_refused_by_the_server(served: Served) -> None:
    address, _, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        err = await rejected(stub.Register(target_pb("172.16.1.1/24", "x" * 1_000_000), timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(err.details() or "") < 200 and owner.targets() == ()


@pytest.mark.parametrize("method", ["/nsp.v1.TargetRegistry/Register", "/nsp.v1.TargetRegistry/Watch",
                                    "/nsp.v1.ConfigurationManager/WatchStream"])
async def test_an_undecodable_request_is_invalid_argument_not_unknown(served: Served, method: str) -> None:
    address, _, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        raw = {"request_serializer": lambda x: x, "response_deserializer": lambda x: x}
        if method.endswith("Register"):
            err = await rejected(channel.unary_unary(method, **raw)(b"\xff\xff\xff", timeout=5))  # type: ignore[arg-type]
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in channel.unary_stream(method, **raw)(b"\xff\xff\xff", timeout=5):  # type: ignore[arg-type]
                    pass
            err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"{method}: the request is not a valid message (DecodeError)"
    assert owner.targets() == ()


async def test_watches_beyond_the_quota_are_resource_exhausted_and_a_closed_one_frees_its_place(
        tmp_path: pathlib.Path) -> None:
    server, (address, manager, owner) = await serve(tmp_path, watchers.Quota(total=10, per_peer=3), tcp=True)
    flt = targetregistry_pb2.Target(status=targetregistry_pb2.Target.ANY, stream=stream_pb())
    # Over TCP one peer is one connection (a local subchannel pool: one connection per channel).
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
    try:
        stubs = [targetregistry_pb2_grpc.TargetRegistryStub(c) for c in channels]
        first = [stubs[0].Watch(flt) for _ in range(3)]
        for call in first:
            assert (await call.read()).targets == []
        code, details = await refused_watch(stubs[0].Watch(flt))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "this peer already holds 3" in details
        others = [stubs[1 + i // 3].Watch(flt) for i in range(7)]  # 3 + 7 = the total of 10
        for call in others:
            await call.read()
        code, details = await refused_watch(stubs[3].Watch(flt))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already serves 10" in details
        first[0].cancel()
        for _ in range(100):
            if owner.watcher_count == 9:
                break
            await asyncio.sleep(0.05)
        again = stubs[3].Watch(flt)
        assert (await again.read()).targets == []
        assert owner.watcher_count == 10
    finally:
        for c in channels:
            await c.close()
        manager.close()
        owner.close()
        await server.stop(0.5)


class Hanging(targetregistry_pb2_grpc.TargetRegistryServicer):
    async def Register(self, request: targetregistry_pb2.Target, context: grpc.aio.ServicerContext
                       ) -> empty_pb2.Empty:
        await asyncio.Event().wait()  # a handler that never returns by itself
        return empty_pb2.Empty()


async def test_a_hanging_unary_handler_is_ended_by_the_server_for_a_client_without_deadline(
        tmp_path: pathlib.Path) -> None:
    server = grpcutil.create_server(unary_seconds=0.3)
    targetregistry_pb2_grpc.add_TargetRegistryServicer_to_server(Hanging(), server)
    address = f"unix://{tmp_path}/hang.sock"
    grpcutil.add_listener(server, address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
            # No client deadline: the test's own wait_for only guards against a regression hanging the suite.
            err = await asyncio.wait_for(rejected(stub.Register(target_pb("172.16.1.1/24", "1"))), 30)
    finally:
        await server.stop(0)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.details() == "/nsp.v1.TargetRegistry/Register: the server ends a call after 0.3 s"
