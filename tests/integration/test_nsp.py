"""The NSP as a real process on loopback, used through the real NspClient.

What is real: the ``meridio run nsp`` process (gRPC on 127.0.0.1, sqlite file, ConfigMap-format file
parsed by the real codec), signals, the client library. Nothing is faked.
"""
from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest

from meridio.api import model as m
from meridio.api.nspclient import NspClient
from meridio.common import health
from meridio.common.retry import Backoff, PermanentError, TemporaryError
from tests.integration.nsp_support import SAMPLE_CONFIG, Reader, free_port, launch_nsp, start_nsp

T = TypeVar("T")
TA = m.Trench("trench-a")
C1 = m.Conduit("conduit-a-1", TA)
S1 = m.Stream("stream-a-i", C1, 100)
ANY = m.TargetStatus.ANY

CHANGED_CONFIG = SAMPLE_CONFIG.replace(
    "  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}\n",
    "  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}\n"
    "  - {name: stream-a-iii, conduit: conduit-a-1, max-targets: 50}\n")
INVALID_CONFIG = SAMPLE_CONFIG.replace("max-targets: 100}", "max-targets: 100, colour: blue}")


async def next_of(watch: AsyncIterator[T], timeout: float = 5.0) -> T:
    return await Reader(watch).next(timeout)


def client(address: str) -> NspClient:
    return NspClient(address, backoff=lambda: Backoff(initial=0.2, cap=1.0))


def target(ip: str, status: m.TargetStatus = m.TargetStatus.ENABLED, ident: str = "1") -> m.Target:
    return m.Target.make(ips=[ip], context={"identifier": ident}, status=status, stream=S1)


async def test_watchers_receive_the_configuration_of_the_file(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    async with client(start_nsp(procs, tmp_path)) as nsp:
        assert await next_of(nsp.watch_trench()) == TA
        assert [c.name for c in await next_of(nsp.watch_conduits(m.Conduit("", TA)))] == ["conduit-a-1"]
        streams = await next_of(nsp.watch_streams(m.Stream("", m.Conduit("conduit-a-1"))))
        assert [(s.name, s.max_targets, s.conduit) for s in streams] == [
            ("stream-a-i", 100, C1), ("stream-a-ii", 100, C1)]
        (flow,) = await next_of(nsp.watch_flows(m.Flow("", m.Stream("stream-a-i"))))
        assert (flow.name, flow.destination_port_ranges, [v.address for v in flow.vips]) == (
            "flow-a-x-tcp", ("4000",), ["203.0.113.1/32", "2001:db8::1/128"])
        assert [v.name for v in await next_of(nsp.watch_vips(m.Vip("", "", TA)))] == ["vip-a-1-v4", "vip-a-1-v6"]
        (attractor,) = await next_of(nsp.watch_attractors(m.Attractor("attractor-a-1", TA)))
        assert [g.bfd_spec for g in attractor.gateways] == [m.BfdSpec(300, 300, 5)]
        (gateway,) = await next_of(nsp.watch_gateways())
        assert (gateway.remote_asn, gateway.local_asn, gateway.hold_time) == (4248829953, 8103, 24)


async def test_a_missing_file_serves_an_empty_configuration_and_no_trench(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path, config=None)
    async with client(nsp_proc.address) as nsp:
        trench = Reader(nsp.watch_trench())
        assert await trench.next() is None
        assert await next_of(nsp.watch_streams()) == []
        nsp_proc.write_config(SAMPLE_CONFIG)
        assert await trench.next() == TA
    assert "configFileMissing" in nsp_proc.output()


async def test_a_changed_config_file_reaches_watchers_within_one_second(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    async with client(nsp_proc.address) as nsp:
        streams, vips = Reader(nsp.watch_streams(m.Stream("", C1))), Reader(nsp.watch_vips())
        assert len(await streams.next()) == 2
        assert len(await vips.next()) == 2
        delays = []
        for text, expected in ((CHANGED_CONFIG, 3), (SAMPLE_CONFIG, 2), (CHANGED_CONFIG, 3)):
            started = time.monotonic()
            nsp_proc.write_config(text)
            got = await streams.next()
            delays.append(time.monotonic() - started)
            assert len(got) == expected
        assert max(delays) < 1.0, f"config changes took {delays} s to reach the watcher"
        # The VIP watcher's view did not change: it was sent nothing (per-watcher dedupe).
        assert await vips.quiet_for(0.5)


async def test_an_invalid_file_keeps_serving_the_last_good_configuration(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    async with client(nsp_proc.address) as nsp:
        streams = Reader(nsp.watch_streams())
        assert len(await streams.next()) == 2
        nsp_proc.write_config(INVALID_CONFIG)
        assert await streams.quiet_for(0.8)
        assert len(await next_of(nsp.watch_streams())) == 2  # a new watcher too gets the last good one
        nsp_proc.write_config(CHANGED_CONFIG)
        assert len(await streams.next()) == 3
    lines = [json.loads(line) for line in nsp_proc.output().splitlines() if line.startswith("{")]
    invalid = [line for line in lines if line["message"] == "configInvalid"]
    assert len(invalid) == 1 and "colour" in invalid[0]["error"]
    assert invalid[0]["reason"] == "keepingLastGoodConfiguration"
    assert "Traceback" not in nsp_proc.output()


async def test_registered_targets_survive_a_sigkill_and_still_expire_later(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path, entry_timeout="4s")
    async with client(nsp_proc.address) as nsp:
        watch = Reader(nsp.watch_targets(m.Target(status=ANY, stream=m.Stream("stream-a-i"))))
        assert await watch.next() == []
        await nsp.register(target("172.16.1.6/24"))
        assert [t.status for t in await watch.next()] == [m.TargetStatus.DISABLED]
        await nsp.register(target("172.16.1.6/24"))
        assert [t.status for t in await watch.next()] == [m.TargetStatus.ENABLED]

        nsp_proc.proc.send_signal(signal.SIGKILL)
        nsp_proc.proc.wait(5)
        nsp_proc.restart()
        restarted = time.monotonic()
        # The same watch reconnects by itself and yields the restored list.
        restored = await watch.next(timeout=4.0)
        assert [(t.ips, t.status) for t in restored] == [(("172.16.1.6/24",), m.TargetStatus.ENABLED)]
        # Nobody refreshes it: it expires one entry timeout after the restart.
        assert await watch.next(timeout=10.0) == []
        assert time.monotonic() - restarted >= 3.0
    assert "targetsRestored" in nsp_proc.output()


async def test_sigterm_stops_the_nsp_with_exit_code_zero_while_watches_are_open(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    async with client(nsp_proc.address) as nsp:
        watches = [nsp.watch_streams(), nsp.watch_targets(m.Target(status=ANY))]
        for w in watches:
            await next_of(w)
        nsp_proc.proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, nsp_proc.proc.wait, 5.0)
    assert code == 0
    assert '"nspStopped"' in nsp_proc.output()


async def test_health_is_serving_on_the_port_and_on_the_health_socket(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    sock = tmp_path / "run" / "health.sock"
    nsp_proc = launch_nsp(procs, tmp_path, extra=("--health-address", f"unix://{sock}"))
    for address in (nsp_proc.address, f"unix://{sock}"):
        assert await health.check(address, "") == health.Status.SERVING
        assert await health.check(address, health.LIVENESS) == health.Status.SERVING
        assert await health.check(address, health.NSP) == health.Status.SERVING
        assert await health.check(address, health.READINESS) == health.Status.SERVICE_UNKNOWN


async def test_an_invalid_target_is_rejected_naming_the_field(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    async with client(start_nsp(procs, tmp_path)) as nsp:
        with pytest.raises(PermanentError, match=r"INVALID_ARGUMENT: target\.stream\.name: a DEFAULT target"):
            await nsp.register(m.Target.make(ips=["172.16.1.6/24"]))
        with pytest.raises(PermanentError, match=r"target\.status: must be ENABLED or DISABLED"):
            await nsp.register(target("172.16.1.6/24", status=ANY))
        assert await next_of(nsp.watch_targets(m.Target(status=ANY))) == []


async def test_register_raises_temporary_error_when_the_nsp_is_unreachable() -> None:
    async with NspClient(f"127.0.0.1:{free_port()}", call_timeout=2.0) as nsp:
        started = time.monotonic()
        with pytest.raises(TemporaryError, match="UNAVAILABLE"):
            await nsp.register(target("172.16.1.6/24"))
        assert time.monotonic() - started < 2.5
        assert not nsp.connected.is_set()


async def test_a_corrupt_database_is_set_aside_and_the_nsp_serves(procs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    nsp_proc = launch_nsp(procs, tmp_path)
    nsp_proc.proc.send_signal(signal.SIGTERM)
    assert nsp_proc.proc.wait(5) == 0
    for leftover in nsp_proc.datasource.parent.glob("registry.db-*"):
        leftover.unlink()
    nsp_proc.datasource.write_bytes(b"garbage, not sqlite" * 64)
    nsp_proc.restart()
    aside = list(nsp_proc.datasource.parent.glob("registry.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"garbage")
    async with client(nsp_proc.address) as nsp:
        await nsp.register(target("172.16.1.6/24"))
        assert len(await next_of(nsp.watch_targets(m.Target(status=ANY)))) == 1
    assert '"registryCorrupt"' in nsp_proc.output()
