"""StreamAvailabilityService (reference §1.7): paired in-process client and server on a unix socket."""
from __future__ import annotations

import asyncio
import pathlib

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from meridio.api.pb.loadbalancer.v1 import stream_pb2_grpc
from meridio.common import grpcutil
from meridio.loadbalancer.availability import MAX_WATCHERS, Availability, AvailabilityService


async def serve(tmp_path: pathlib.Path, availability: Availability) -> tuple[grpc.aio.Server, str]:
    server = grpcutil.create_server()
    stream_pb2_grpc.add_StreamAvailabilityServiceServicer_to_server(AvailabilityService(availability), server)
    address = f"unix:{tmp_path / 'lb.sock'}"
    grpcutil.add_listener(server, address)
    await server.start()
    return server, address


def contexts(response: object) -> list[dict[str, str]]:
    return [dict(t.context) for t in response.targets]  # type: ignore[attr-defined]


async def test_a_watcher_gets_the_current_value_then_only_changes(tmp_path: pathlib.Path) -> None:
    availability = Availability("lb-a")
    server, address = await serve(tmp_path, availability)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = stream_pb2_grpc.StreamAvailabilityServiceStub(channel).Watch(empty_pb2.Empty())
            it = call.__aiter__()
            assert contexts(await it.__anext__()) == [{}]
            availability.set(True)
            availability.set(True)
            assert contexts(await it.__anext__()) == [{"identifier": "lb-a"}]
            availability.set(False)
            assert contexts(await it.__anext__()) == [{}]
            call.cancel()
    finally:
        await server.stop(None)


async def test_stopping_tells_every_watcher_unavailable_before_ending_the_stream(tmp_path: pathlib.Path) -> None:
    availability = Availability("lb-a")
    availability.set(True)
    server, address = await serve(tmp_path, availability)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = stream_pb2_grpc.StreamAvailabilityServiceStub(channel).Watch(empty_pb2.Empty())
            it = call.__aiter__()
            assert contexts(await it.__anext__()) == [{"identifier": "lb-a"}]
            availability.close()
            assert contexts(await it.__anext__()) == [{}]
            rest = [r async for r in call]
            assert rest == []
    finally:
        await server.stop(None)


async def test_a_watcher_arriving_after_close_gets_one_answer_and_the_end(tmp_path: pathlib.Path) -> None:
    availability = Availability("lb-a")
    availability.close()
    responses = [r async for r in availability.watch()]
    assert [contexts(r) for r in responses] == [[{}]]
    await asyncio.sleep(0)


async def test_watches_beyond_the_limit_are_resource_exhausted(tmp_path: pathlib.Path) -> None:
    availability = Availability("lb-a")
    server, address = await serve(tmp_path, availability)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = stream_pb2_grpc.StreamAvailabilityServiceStub(channel)
            calls = [stub.Watch(empty_pb2.Empty()) for _ in range(MAX_WATCHERS)]
            for call in calls:
                await call.read()
            over = stub.Watch(empty_pb2.Empty())
            try:
                got = await over.read()
                code = await over.code()
            except grpc.aio.AioRpcError as exc:
                got, code = grpc.aio.EOF, exc.code()
            assert got is grpc.aio.EOF and code == grpc.StatusCode.RESOURCE_EXHAUSTED
            for call in calls:
                call.cancel()
    finally:
        await server.stop(None)
