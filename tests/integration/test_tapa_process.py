"""The TAPA as a real process against the real NSP process (loopback), with a TEST DOUBLE of the proxy
link service (tapa_support.ProxyDouble: fixed addresses, no interfaces). The real proxy, LB and data
path are exercised in tests/netns/test_conduit_*.py.
"""
from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import wait_for
from tests.integration.metrics_support import scrape, value
from tests.integration.nsp_support import SAMPLE_CONFIG, free_port, launch_nsp
from tests.integration.tapa_support import (
    ProxyDouble,
    enabled,
    nsp_targets,
    start_tapa,
    stream_pb,
    tap_call,
    wait_statuses,
)

CONFIG = SAMPLE_CONFIG.replace(
    "  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}\n",
    "  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}\n"
    "  - {name: stream-a-iii, conduit: conduit-a-1, max-targets: 1}\n")


@pytest.fixture
def proxy(tmp_path: pathlib.Path) -> Iterator[ProxyDouble]:
    double = ProxyDouble(tmp_path / "proxy" / "conduit-a-1").start()
    try:
        yield double
    finally:
        double.stop()


def test_an_open_stream_is_registered_enabled_with_the_link_addresses(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    (target,) = nsp_targets(nsp.address, "stream-a-i")
    assert list(target.ips) == ["172.16.1.6/24", "fd00:0:0:1::6/64"]
    assert 1 <= int(target.context["identifier"]) <= 100
    assert proxy.calls == ["connect target-1"]


def test_a_scrape_shows_each_streams_phase_and_status(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    port = free_port()
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy",
                      extra=("--metrics-enabled", "true", "--metrics-port", str(port)))
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    tap_call(tapa, "Open", stream_pb("no-such-stream"))
    wait_statuses(tapa, {"stream-a-i": "OPEN", "no-such-stream": "UNDEFINED"})
    samples = scrape(port)
    ids = {"trench": "trench-a", "conduit": "conduit-a-1"}
    assert value(samples, "meridio_tapa_stream_state", **ids, stream="stream-a-i", state="open") == 1
    assert value(samples, "meridio_tapa_stream_state", **ids, stream="stream-a-i", state="opening") == 0
    assert value(samples, "meridio_tapa_stream_status", **ids, stream="no-such-stream", status="undefined") == 1
    assert (value(samples, "meridio_tapa_streams", state="open"), value(samples, "meridio_tapa_streams",
                                                                        state="idle")) == (1, 1)
    assert value(samples, "meridio_tapa_stream_transitions_total", state="open") >= 1


def test_open_of_a_stream_unknown_to_the_nsp_is_undefined(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("no-such-stream"))
    tap_call(tapa, "Open", stream_pb("stream-x", conduit="no-such-conduit"))
    wait_statuses(tapa, {"no-such-stream": "UNDEFINED", "stream-x": "UNDEFINED"})
    assert nsp_targets(nsp.address, "no-such-stream") == []


@pytest.mark.parametrize("stream, code, message", [
    (stream_pb("s", trench=""), grpc.StatusCode.INVALID_ARGUMENT, "trench name cannot be empty"),
    (stream_pb("S!"), grpc.StatusCode.INVALID_ARGUMENT, "stream name 'S!' is invalid"),
    (stream_pb("stream-b-i", "conduit-b-1", "trench-b"), grpc.StatusCode.FAILED_PRECONDITION,
     "another trench is already connected"),
], ids=["empty-trench", "bad-name", "second-trench"])
def test_bad_open_requests_get_a_clear_grpc_error_and_change_nothing(procs, tmp_path, proxy, stream, code,  # type: ignore[no-untyped-def]
                                                                     message) -> None:
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    with pytest.raises(grpc.RpcError) as err:
        tap_call(tapa, "Open", stream)
    assert (err.value.code(), err.value.details().split(":")[0]) == (code, message)
    wait_statuses(tapa, {"stream-a-i": "OPEN"}, timeout=2)
    assert tapa.proc.poll() is None


def test_with_max_targets_one_the_second_target_is_unavailable_until_the_first_closes(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    first = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    second = start_tapa(procs, tmp_path, "target-2", nsp.address, tmp_path / "proxy")
    tap_call(first, "Open", stream_pb("stream-a-iii"))
    wait_statuses(first, {"stream-a-iii": "OPEN"})
    tap_call(second, "Open", stream_pb("stream-a-iii"))
    tap_call(second, "Open", stream_pb("stream-a-i"))
    wait_statuses(second, {"stream-a-iii": "UNAVAILABLE", "stream-a-i": "OPEN"})
    assert enabled(nsp.address, "stream-a-iii") == {"172.16.1.6/24": "1"}
    tap_call(first, "Close", stream_pb("stream-a-iii"))
    wait_statuses(second, {"stream-a-iii": "OPEN", "stream-a-i": "OPEN"})
    assert enabled(nsp.address, "stream-a-iii") == {"172.16.1.7/24": "1"}


def test_an_nsp_restart_makes_streams_unavailable_then_open_again_with_the_same_identifier(  # type: ignore[no-untyped-def]
        procs, tmp_path, proxy) -> None:
    nsp = launch_nsp(procs, tmp_path, CONFIG, entry_timeout="5s")
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    before = enabled(nsp.address, "stream-a-i")
    procs.stop(nsp.proc, signal.SIGKILL)
    wait_statuses(tapa, {"stream-a-i": "UNAVAILABLE"})
    nsp.restart()
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    assert enabled(nsp.address, "stream-a-i") == before


def test_an_nsp_that_lost_its_registry_gets_the_target_back(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    procs.stop(nsp.proc, signal.SIGKILL)
    for path in nsp.datasource.parent.iterdir():
        path.unlink()
    nsp.restart()
    wait_for(lambda: enabled(nsp.address, "stream-a-i"), timeout=15, message="the target registered again")
    wait_statuses(tapa, {"stream-a-i": "OPEN"})


def test_a_stream_removed_from_the_configuration_is_undefined_and_unregistered_then_reopens(  # type: ignore[no-untyped-def]
        procs, tmp_path, proxy) -> None:
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-ii"))
    wait_statuses(tapa, {"stream-a-ii": "OPEN"})
    nsp.write_config(CONFIG.replace("  - {name: stream-a-ii, conduit: conduit-a-1, max-targets: 100}\n", "")
                     .replace("    stream: stream-a-ii\n", "    stream: stream-a-i\n"))
    wait_statuses(tapa, {"stream-a-ii": "UNDEFINED"})
    wait_for(lambda: nsp_targets(nsp.address, "stream-a-ii") == [], timeout=5, message="the target unregistered")
    nsp.write_config(CONFIG)
    wait_statuses(tapa, {"stream-a-ii": "OPEN"})


def test_a_killed_tapas_target_expires_from_the_nsp_after_the_keepalive(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG, entry_timeout="3s")
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    time.sleep(4)  # longer than the NSP keepalive: the refreshes (every 1 s) keep the target
    assert enabled(nsp.address, "stream-a-i") != {}
    procs.stop(tapa.proc, signal.SIGKILL)
    assert enabled(nsp.address, "stream-a-i") != {}  # a killed TAPA unregisters nothing...
    wait_for(lambda: nsp_targets(nsp.address, "stream-a-i") == [], timeout=15, message="the target to expire")


def test_sigterm_closes_every_stream_and_exits_zero(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    tap_call(tapa, "Open", stream_pb("stream-a-i"))
    tap_call(tapa, "Open", stream_pb("stream-a-ii"))
    wait_statuses(tapa, {"stream-a-i": "OPEN", "stream-a-ii": "OPEN"})
    assert procs.stop(tapa.proc) == 0
    assert nsp_targets(nsp.address, "stream-a-i") == [] == nsp_targets(nsp.address, "stream-a-ii")
    assert proxy.calls == ["connect target-1", "disconnect target-1"]


def test_the_target_cli_opens_watches_and_closes_like_meridios_target_client(procs, tmp_path, proxy) -> None:  # type: ignore[no-untyped-def]
    nsp = launch_nsp(procs, tmp_path, CONFIG)
    tapa = start_tapa(procs, tmp_path, "target-1", nsp.address, tmp_path / "proxy")
    cli = [sys.executable, "-m", "meridio.cli.main", "target"]
    args = ["-t", "trench-a", "-c", "conduit-a-1", "-s", "stream-a-i", "--socket", tapa.socket]
    assert subprocess.run([*cli, "open", *args], capture_output=True, timeout=30).returncode == 0
    wait_statuses(tapa, {"stream-a-i": "OPEN"})
    watch = subprocess.run(["timeout", "--preserve-status", "2", *cli, "watch", "--socket", tapa.socket],
                           capture_output=True, text=True, timeout=30)
    assert watch.stdout == "New stream list:\nOPEN - stream-a-i - conduit-a-1 - trench-a\n"
    assert watch.returncode == 0
    assert subprocess.run([*cli, "close", *args], capture_output=True, timeout=30).returncode == 0
    wait_statuses(tapa, {})
    bad = subprocess.run([*cli, "open", "-t", "trench-a", "-c", "conduit-a-1", "-s", "stream-a-i", "--socket",
                          str(tmp_path / "none.sock")], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no socket at" in bad.stderr
