"""2000 target watches opened at one instant on a real NSP all get their first list; none is CANCELLED.

Real: a ``meridio run nsp`` process on a unix socket, one grpc.aio client channel. Nothing is faked.
Before the NSP sized gRPC core's queue of not-yet-picked-up calls (``nsp.app.pending_options``), about
10 % of such a burst ended CANCELLED before any handler saw it (the core's default limit of 1000).
"""
from __future__ import annotations

import asyncio
import collections
import pathlib
from typing import Any

import grpc
import grpc.aio

from meridio.api.pb.nsp.v1 import model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from meridio.nsp import app
from tests.integration import nsp_support

WATCHES = 2000


def test_the_pending_call_queue_holds_every_watch_the_quota_admits() -> None:
    options = dict(app.pending_options(4096))
    assert options["grpc.server.max_pending_requests"] > 4096
    assert options["grpc.server.max_pending_requests_hard_limit"] > options["grpc.server.max_pending_requests"]


async def test_a_burst_of_2000_watches_all_get_their_first_list(procs: Any, tmp_path: pathlib.Path) -> None:
    nsp = nsp_support.launch_nsp(procs, tmp_path, listen=f"unix:{tmp_path / 'nsp.sock'}")
    flt = targetregistry_pb2.Target(status=targetregistry_pb2.Target.ANY, stream=model_pb2.Stream(
        name="stream-a-i", conduit=model_pb2.Conduit(name="conduit-a-1", trench=model_pb2.Trench(name="trench-a"))))
    outcomes: collections.Counter[str] = collections.Counter()
    async with grpc.aio.insecure_channel(nsp.address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        calls = [stub.Watch(flt) for _ in range(WATCHES)]

        async def first(call: Any) -> None:
            try:
                await call.read()
                outcomes["first list"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1

        await asyncio.wait_for(asyncio.gather(*(first(c) for c in calls)), timeout=120)
        for call in calls:
            call.cancel()
    assert outcomes == {"first list": WATCHES}
