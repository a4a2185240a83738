"""The NSP servicers in-process over a unix socket: watcher bookkeeping and error mapping on the wire.

What is real: grpc.aio server and client, the servicers, the ConfigurationManager and registry cores.
Faked: ``BrokenTargets`` (a registry owner whose register raises a bug-like error), to see the INTERNAL path.
"""
from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meridio.api import model as m
from meridio.api.nspclient import NspClient
from meridio.api.pb.nsp.v1 import targetregistry_pb2, targetregistry_pb2_grpc
from meridio.common import grpcutil
from meridio.common.clock import SystemClock
from meridio.common.retry import TemporaryError
from meridio.nsp import config, registry, service, targets
from tests.integration.nsp_support import Reader

TA = m.Trench("trench-a")
CONFIG = m.Configuration(TA, (m.Conduit("conduit-a-1", TA),))


class BrokenTargets(targets.Targets):
    """Fake: a registry owner with a bug in register."""

    def register(self, target: m.Target, *, owner: str | None = None) -> None:
        raise KeyError("bug")


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[tuple[str, config.ConfigurationManager, targets.Targets]]:
    manager = config.ConfigurationManager(CONFIG)
    owner = targets.Targets(registry.Registry(clock=SystemClock()), None)
    server = grpcutil.create_server()
    service.add_to_server(server, manager, owner)
    address = f"unix://{tmp_path}/nsp.sock"
    grpcutil.add_listener(server, address)
    await server.start()
    try:
        yield address, manager, owner
    finally:
        manager.close()
        owner.close()
        await server.stop(0.5)


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_a_client_that_goes_away_is_unsubscribed(served) -> None:  # type: ignore[no-untyped-def]
    address, manager, owner = served
    async with NspClient(address) as nsp:
        conduits, tgts = Reader(nsp.watch_conduits()), Reader(nsp.watch_targets(m.Target()))
        assert [c.name for c in await conduits.next()] == ["conduit-a-1"]
        assert await tgts.next() == []
        assert (manager.watcher_count, owner.watcher_count) == (1, 1)
    await wait_until(lambda: (manager.watcher_count, owner.watcher_count) == (0, 0))


async def test_a_configuration_update_reaches_a_remote_watcher(served) -> None:  # type: ignore[no-untyped-def]
    address, manager, _ = served
    async with NspClient(address) as nsp:
        trench = Reader(nsp.watch_trench(m.Trench("trench-a")))
        assert await trench.next() == TA
        manager.update(m.Configuration())
        assert await trench.next() is None  # TrenchResponse without trench: none configured


async def test_unknown_enum_values_are_invalid_argument_naming_the_field(served) -> None:  # type: ignore[no-untyped-def]
    address, _, owner = served
    async with grpc.aio.insecure_channel(address) as channel:
        stub = targetregistry_pb2_grpc.TargetRegistryStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Register(targetregistry_pb2.Target(ips=["10.0.0.1"], type=9), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "target.type: unknown value 9 (must be one of DEFAULT, FRONTEND, LOADBALANCER)"
    assert owner.targets() == ()


async def test_a_bug_in_the_core_is_internal_with_a_one_line_message(tmp_path: pathlib.Path) -> None:
    server = grpcutil.create_server()
    broken = BrokenTargets(registry.Registry(clock=SystemClock()), None)
    service.add_to_server(server, config.ConfigurationManager(CONFIG), broken)
    address = f"unix://{tmp_path}/nsp.sock"
    grpcutil.add_listener(server, address)
    await server.start()
    try:
        async with NspClient(address) as nsp:
            with pytest.raises(TemporaryError, match=r"INTERNAL: internal error in Register: KeyError: 'bug'$"):
                await nsp.register(m.Target.make(ips=["fe"], type=m.TargetType.FRONTEND))
    finally:
        await server.stop(0.5)
