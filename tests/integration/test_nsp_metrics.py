"""The NSP process's ``/metrics``: watch streams and registry entries as a scrape shows them.

Real: ``meridio run nsp`` on loopback with ``--metrics-enabled``, the NspClient, HTTP over 127.0.0.1.
Nothing is faked.
"""
from __future__ import annotations

import asyncio
import pathlib
import socket
from typing import Any

from meridio.api import model as m
from meridio.api.nspclient import NspClient
from tests.conftest import wait_for
from tests.integration.metrics_support import scrape, until, value
from tests.integration.nsp_support import Reader, free_port, launch_nsp

S1 = m.Stream("stream-a-i", m.Conduit("conduit-a-1", m.Trench("trench-a")), 100)


def metrics_flags(port: int) -> tuple[str, ...]:
    return ("--metrics-enabled", "true", "--metrics-port", str(port))


async def test_a_scrape_shows_watchers_targets_resources_and_operations(procs: Any, tmp_path: pathlib.Path) -> None:
    port = free_port()
    nsp_proc = launch_nsp(procs, tmp_path, extra=metrics_flags(port))
    before = await asyncio.to_thread(scrape, port)
    assert value(before, "meridio_nsp_watchers", trench="trench-a", kind="stream") == 0
    assert value(before, "meridio_nsp_configuration_resources", trench="trench-a", kind="stream") == 2
    assert value(before, "meridio_nsp_configuration_loads_total", result="applied") == 1
    async with NspClient(nsp_proc.address) as nsp:
        streams = Reader(nsp.watch_streams(m.Stream("", S1.conduit)))
        await streams.next()
        await nsp.register(m.Target.make(ips=["172.16.0.2/24"], context={"identifier": "1"}, stream=S1))
        await until(port, lambda s: value(s, "meridio_nsp_watchers", kind="stream") == 1
                    and value(s, "meridio_nsp_targets", type="default", status="disabled") == 1
                    and value(s, "meridio_nsp_registry_operations_total", op="register") == 1)
    after = await until(port, lambda s: value(s, "meridio_nsp_watchers", kind="stream") == 0)
    assert value(after, "meridio_nsp_targets", type="default", status="disabled") == 1


def test_a_metrics_port_in_use_is_logged_and_the_nsp_serves_anyway(procs: Any, tmp_path: pathlib.Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        nsp_proc = launch_nsp(procs, tmp_path, extra=metrics_flags(taken.getsockname()[1]))  # waits: SERVING
        wait_for(lambda: "metricsNotServed" in nsp_proc.output(), timeout=5, message="metricsNotServed logged")
        assert nsp_proc.proc.poll() is None
