"""The ``ambassador.v1.Tap`` servicer's bound on Watch streams: a paired in-process client and server on a
unix socket, the TAPA behind it wired to fakes (tapa_fakes)."""
from __future__ import annotations

import pathlib

import grpc
import grpc.aio
import pytest

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.common import grpcutil
from meridio.common import settings as settingsmod
from meridio.tapa import app, service
from tests.conftest import eventually
from tests.unit.tapa_fakes import FakeNsp
from tests.unit.test_tapa_tap import Harness

LIMIT = 3


async def _serve(tmp_path: pathlib.Path, servicer: service.TapServicer) -> tuple[grpc.aio.Server, str]:
    server = grpcutil.create_server()
    tap_pb2_grpc.add_TapServicer_to_server(servicer, server)
    address = f"unix:{tmp_path / 'tapa.sock'}"
    grpcutil.add_listener(server, address)
    await server.start()
    return server, address


async def test_watches_beyond_the_limit_are_refused_and_a_closed_one_frees_its_place(tmp_path: pathlib.Path) -> None:
    async with Harness(FakeNsp()) as h:
        servicer = service.TapServicer(h.tap, max_watchers=LIMIT)
        server, address = await _serve(tmp_path, servicer)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = tap_pb2_grpc.TapStub(channel)
                calls = [stub.Watch(tap_pb2.Stream()) for _ in range(LIMIT)]
                for call in calls:
                    assert isinstance(await call.read(), tap_pb2.StreamResponse)
                assert servicer.watchers == LIMIT
                refused = stub.Watch(tap_pb2.Stream())
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await refused.read()
                assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert err.value.details() == (f"watch: this TAPA already serves {LIMIT} watch streams "
                                               "(MERIDIO_MAX_WATCHERS, the limit); close some first")
                assert servicer.watchers == LIMIT  # the refused one counted nothing
                calls[0].cancel()
                await eventually(lambda: servicer.watchers == LIMIT - 1)
                again = stub.Watch(tap_pb2.Stream())
                assert isinstance(await again.read(), tap_pb2.StreamResponse)
                for call in [*calls, again]:
                    call.cancel()
                await eventually(lambda: servicer.watchers == 0)
        finally:
            await server.stop(None)


def test_the_limit_is_a_setting_with_its_default_and_must_be_positive() -> None:
    assert settingsmod.parse(app.Settings, app.ENV_PREFIX, environ={}).max_watchers == service.MAX_WATCHERS == 64
    assert settingsmod.parse(app.Settings, app.ENV_PREFIX, environ={"MERIDIO_MAX_WATCHERS": "5"}).max_watchers == 5
    zero = settingsmod.parse(app.Settings, app.ENV_PREFIX, environ={"MERIDIO_MAX_WATCHERS": "0", "MERIDIO_NAME": "t"})
    assert app.check(zero) == "MERIDIO_MAX_WATCHERS must be at least 1, not 0"
