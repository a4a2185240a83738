"""NspClient against a real NSP process: reconnection, connectivity reporting, closing; Health.Watch.

What is real: the NSP process on 127.0.0.1, the client library, a health server on a unix socket.
"""
from __future__ import annotations

import asyncio
import pathlib
import signal

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meridio.api import model as m
from meridio.api.nspclient import NspClient
from meridio.common import health
from meridio.common.retry import Backoff
from tests.integration.nsp_support import Reader, free_port, launch_nsp


def fast_backoff() -> Backoff:
    return Backoff(initial=0.2, cap=1.0)


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def test_a_watch_started_before_the_nsp_is_up_yields_once_it_starts(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with NspClient(f"127.0.0.1:{port}", backoff=fast_backoff) as nsp:
        streams = Reader(nsp.watch_streams())
        assert await streams.quiet_for(0.6)
        await asyncio.get_running_loop().run_in_executor(None, lambda: launch_nsp(procs, tmp_path, port=port))
        assert [s.name for s in await streams.next(timeout=5.0)] == ["stream-a-i", "stream-a-ii"]


async def test_connectivity_is_reported_through_the_event_and_the_callback(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    changes: list[bool] = []
    async with NspClient(nsp_proc.address, backoff=fast_backoff, on_connectivity=changes.append) as nsp:
        nsp.connect()
        await asyncio.wait_for(nsp.connected.wait(), 5)
        nsp_proc.proc.send_signal(signal.SIGKILL)
        nsp_proc.proc.wait(5)
        await wait_until(lambda: not nsp.connected.is_set())
        await asyncio.get_running_loop().run_in_executor(None, nsp_proc.restart)
        await asyncio.wait_for(nsp.connected.wait(), 10)
    assert changes == [True, False, True, False]  # the last one: the client was closed


async def test_closing_the_client_ends_its_watches_quietly(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp = NspClient(launch_nsp(procs, tmp_path).address, backoff=fast_backoff)
    seen: list[list[m.Stream]] = []

    async def consume() -> None:
        async for streams in nsp.watch_streams():
            seen.append(streams)

    task = asyncio.ensure_future(consume())
    await wait_until(lambda: bool(seen))
    await nsp.close()
    await asyncio.wait_for(task, 5)  # returns normally: no exception, no hang
    assert len(seen) == 1


async def test_a_watch_survives_an_nsp_restart_and_serves_an_edited_configuration(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    async with NspClient(nsp_proc.address, backoff=fast_backoff) as nsp:
        vips = Reader(nsp.watch_vips())
        assert len(await vips.next()) == 2
        nsp_proc.proc.send_signal(signal.SIGTERM)
        assert nsp_proc.proc.wait(5) == 0
        nsp_proc.write_config(nsp_proc.config_file.read_text().replace(
            "  - {name: vip-a-1-v6, address: 2001:db8::1/128, trench: trench-a}\n", ""))
        await asyncio.get_running_loop().run_in_executor(None, nsp_proc.restart)
        assert [v.name for v in await vips.next(timeout=5.0)] == ["vip-a-1-v4"]


async def test_health_watch_follows_sub_service_changes(tmp_path: pathlib.Path) -> None:
    hc = health.Health({health.READINESS: [health.NSP_CLI, health.EGRESS]})
    address = f"unix://{tmp_path}/health.sock"
    await hc.serve(address)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=health.READINESS))
            statuses = aiter(call)
            NOT, YES = health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING
            assert (await anext(statuses)).status == NOT
            hc.set_serving(health.NSP_CLI)
            hc.set_serving(health.EGRESS)
            assert (await asyncio.wait_for(anext(statuses), 5)).status == YES
            hc.set_serving(health.EGRESS, False)
            assert (await asyncio.wait_for(anext(statuses), 5)).status == NOT
            call.cancel()
    finally:
        await hc.stop()
